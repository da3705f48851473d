//! Milvus hybrid timestamps (TSO).
//!
//! A hybrid timestamp is `(physical_ms << 18) | logical`: milliseconds since the Unix epoch in
//! the high 46 bits and an 18-bit logical counter in the low bits (`tsoutil.ComposeTS`).

/// Number of logical bits in a hybrid timestamp.
pub const LOGICAL_BITS: u32 = 18;

/// Mask of the logical part of a hybrid timestamp.
pub const LOGICAL_MASK: u64 = (1 << LOGICAL_BITS) - 1;

/// Builds a hybrid timestamp. `logical` is truncated to its 18 bits.
#[must_use]
pub const fn compose(physical_ms: u64, logical: u64) -> u64 {
    (physical_ms << LOGICAL_BITS) | (logical & LOGICAL_MASK)
}

/// Physical part of a hybrid timestamp, in milliseconds since the Unix epoch.
#[must_use]
pub const fn physical_ms(ts: u64) -> u64 {
    ts >> LOGICAL_BITS
}

/// Logical part of a hybrid timestamp.
#[must_use]
pub const fn logical(ts: u64) -> u64 {
    ts & LOGICAL_MASK
}

/// Hybrid timestamp of a wall-clock time (logical part 0). Times before the epoch give 0.
#[must_use]
pub fn from_system_time(t: std::time::SystemTime) -> u64 {
    let ms = t.duration_since(std::time::UNIX_EPOCH).map_or(0, |d| {
        u64::try_from(d.as_millis()).unwrap_or(u64::MAX >> LOGICAL_BITS)
    });
    compose(ms, 0)
}

/// Wall-clock time of the physical part of a hybrid timestamp.
#[must_use]
pub fn to_system_time(ts: u64) -> std::time::SystemTime {
    std::time::UNIX_EPOCH + std::time::Duration::from_millis(physical_ms(ts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compose_and_split() {
        let ts = compose(1_700_000_000_123, 42);
        assert_eq!(physical_ms(ts), 1_700_000_000_123);
        assert_eq!(logical(ts), 42);
        assert_eq!(ts, (1_700_000_000_123 << 18) | 42);
    }

    #[test]
    fn logical_is_truncated() {
        let ts = compose(5, LOGICAL_MASK + 3);
        assert_eq!(physical_ms(ts), 5);
        assert_eq!(logical(ts), 2);
    }

    #[test]
    fn split_and_compose_round_trip() {
        let ts = 449_534_118_316_441_601_u64;
        assert_eq!(compose(physical_ms(ts), logical(ts)), ts);
        assert_eq!(logical(ts), ts & 0x3FFFF);
        assert_eq!(physical_ms(ts), ts / 262_144);
    }

    #[test]
    fn system_time_round_trip() {
        let t = std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_234_567);
        let ts = from_system_time(t);
        assert_eq!(physical_ms(ts), 1_234_567);
        assert_eq!(to_system_time(ts), t);
        let before = std::time::UNIX_EPOCH - std::time::Duration::from_secs(1);
        assert_eq!(from_system_time(before), 0);
    }
}
