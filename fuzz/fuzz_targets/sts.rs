#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| spoolmail_fuzz::sts::check(data));
