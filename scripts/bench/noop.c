/* The cost of starting any process at all: a dynamically linked main() that
 * returns 0 and writes nothing. Shown beside the floor by scripts/bench-enqueue
 * so the fsync part of the floor can be read off. */
int main(void) { return 0; }
