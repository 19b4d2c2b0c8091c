use super::Check;
use crate::model::StateConfig;

pub(super) fn validate(st: &StateConfig, check: &mut Check) {
    check(
        (1..=8).contains(&st.windows.len()),
        "state.windows",
        format!("must list 1 to 8 windows, got {}", st.windows.len()),
    );
    for (i, w) in st.windows.iter().enumerate() {
        let key = format!("state.windows[{i}]");
        let name_ok = !w.name.is_empty()
            && w.name.len() <= 64
            && w.name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && st.windows.iter().filter(|o| o.name == w.name).count() == 1;
        check(
            name_ok,
            &format!("{key}.name"),
            format!(
                "must be a unique name of 1-64 lowercase letters, digits or '_', got {:?}",
                w.name
            ),
        );
        let ms = w.length.as_millis() as u64;
        check(
            (1..=10_000).contains(&w.buckets)
                && ms >= u64::from(w.buckets)
                && ms.is_multiple_of(u64::from(w.buckets.max(1))),
            &format!("{key}.buckets"),
            format!(
                "must be 1-10000 and divide the window length ({}) into whole milliseconds, got {}",
                humantime::format_duration(w.length),
                w.buckets
            ),
        );
        check(
            (1_000..=7 * 86_400_000).contains(&ms),
            &format!("{key}.length"),
            format!(
                "must be between 1s and 7days, got {}",
                humantime::format_duration(w.length)
            ),
        );
    }
    for (key, value, min, max) in [
        ("state.replay_capacity", st.replay_capacity, 100, 10_000_000),
        ("state.max_keys", st.max_keys, 1_000, 100_000_000),
        ("state.relay_above", st.relay_above, 1, 1_000_000),
        (
            "state.cache_max_entries",
            st.cache_max_entries,
            1,
            100_000_000,
        ),
        (
            "state.cache_max_value_bytes",
            st.cache_max_value_bytes,
            1,
            16 * 1024 * 1024,
        ),
        (
            "state.event_max_payload_bytes",
            st.event_max_payload_bytes,
            1,
            16 * 1024 * 1024,
        ),
    ] {
        check(
            (min..=max).contains(&value),
            key,
            format!("must be between {min} and {max}, got {value}"),
        );
    }
}
