//! `submit::Normalizer`, the line and dot rules of intake, against the
//! reference model in `common::normalized`, read through pieces of every
//! size: where a read splits the input must never change the result.

use crate::common::{Bytes, normalized};
use spoolmail::submit::Normalizer;
use std::io::Read;

/// A reader that hands out its input in pieces of the sizes it is given.
struct Pieces<'a> {
    data: &'a [u8],
    sizes: Vec<usize>,
    next: usize,
}

impl Read for Pieces<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let size = self.sizes[self.next % self.sizes.len()];
        self.next += 1;
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

pub fn check(data: &[u8]) {
    let mut b = Bytes(data);
    let ignore_dots = b.flag();
    // Piece sizes 1..=256 for the input, and for the caller's buffer.
    let sizes: Vec<usize> = b.until(0).iter().map(|s| usize::from(*s) + 1).collect();
    let sizes = if sizes.is_empty() { vec![4096] } else { sizes };
    let out_size = usize::from(b.byte()) + 1;
    let input = b.rest();

    let mut reader = Normalizer::new(
        Pieces {
            data: input,
            sizes,
            next: 0,
        },
        ignore_dots,
    );
    let mut got = Vec::new();
    let mut buf = vec![0; out_size];
    loop {
        let n = reader.read(&mut buf).expect("reading from memory");
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
    }
    let want = normalized(input, ignore_dots);
    assert!(
        got == want,
        "normalized {:?} (ignore_dots {ignore_dots}) to {:?}, want {:?}",
        String::from_utf8_lossy(input),
        String::from_utf8_lossy(&got),
        String::from_utf8_lossy(&want)
    );
}
