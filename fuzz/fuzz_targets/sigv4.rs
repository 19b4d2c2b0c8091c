//! The caller's SigV4 signature (Authorization header or presigned query), read and checked
//! before anything else about an S3 request; see `shoal_proxy::fuzzing::sigv4` for the input
//! layout.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_proxy::fuzzing::sigv4(data));
