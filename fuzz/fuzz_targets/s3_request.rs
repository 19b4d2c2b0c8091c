//! S3 addressing (virtual-host or path-style bucket and key), the operation name and the copy
//! source, read from every S3 request; see `shoal_proxy::fuzzing::s3_request` for the input
//! layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_proxy::fuzzing::s3_request(data));
