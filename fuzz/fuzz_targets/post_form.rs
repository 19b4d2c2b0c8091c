//! S3 form uploads (POST Object): the fields before the file, the POST policy and the scan for
//! the file's end; see `shoal_proxy::fuzzing::post_form` for the input layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_proxy::fuzzing::post_form(data));
