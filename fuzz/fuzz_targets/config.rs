//! The bootstrap config loader: TOML text and `SHOAL_*` environment values, as an operator, a
//! templating tool or an orchestrator hands them to a node (`shoal_config::fuzzing::load`
//! says how the input is read).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| shoal_config::fuzzing::load(data));
