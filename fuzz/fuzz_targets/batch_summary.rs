#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| cwn::fuzzing::batch_summary(data));
