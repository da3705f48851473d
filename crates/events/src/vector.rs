//! Decoding of Milvus's packed vector encodings into plain numbers.
//!
//! Milvus keeps float16 and bfloat16 vectors as little-endian 16-bit words and sparse vectors
//! as packed little-endian `(u32 index, f32 value)` pairs; stream consumers get 32-bit floats
//! and index/value pairs instead.

/// IEEE 754 half precision (binary16) to single precision, exact for every input (NaN payloads
/// and subnormals included).
pub fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exp = u32::from((bits >> 10) & 0x1f);
    let mant = u32::from(bits & 0x3ff);
    match (exp, mant) {
        (0, 0) => f32::from_bits(sign),
        (0, m) => {
            // Subnormal: m * 2^-24, exactly representable as a normal f32.
            let v = m as f32 * f32::from_bits(0x3380_0000); // 2^-24
            if sign != 0 {
                -v
            } else {
                v
            }
        }
        (0x1f, m) => f32::from_bits(sign | 0x7f80_0000 | (m << 13)),
        (e, m) => f32::from_bits(sign | ((e + 127 - 15) << 23) | (m << 13)),
    }
}

/// bfloat16 to single precision (bfloat16 is the upper half of an f32).
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits(u32::from(bits) << 16)
}

/// Little-endian 16-bit words of `bytes` converted with `conv`. `bytes` must have an even
/// length (checked by the caller).
pub fn half_words_to_f32(bytes: &[u8], conv: fn(u16) -> f32) -> Vec<f32> {
    bytes
        .chunks_exact(2)
        .map(|w| conv(u16::from_le_bytes([w[0], w[1]])))
        .collect()
}

/// One sparse row: packed little-endian `(u32 index, f32 value)` pairs.
pub fn sparse_row(bytes: &[u8]) -> Result<Vec<(u32, f32)>, String> {
    if !bytes.len().is_multiple_of(8) {
        return Err(format!(
            "sparse vector row of {} bytes is not a whole number of 8-byte (index, value) pairs",
            bytes.len()
        ));
    }
    Ok(bytes
        .chunks_exact(8)
        .map(|p| {
            (
                u32::from_le_bytes([p[0], p[1], p[2], p[3]]),
                f32::from_le_bytes([p[4], p[5], p[6], p[7]]),
            )
        })
        .collect())
}

/// Inverse of [`sparse_row`] (used by tests and by anyone building Milvus inserts).
pub fn encode_sparse_row(pairs: &[(u32, f32)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(pairs.len() * 8);
    for (i, v) in pairs {
        out.extend_from_slice(&i.to_le_bytes());
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision() {
        assert_eq!(f16_to_f32(0x3c00), 1.0);
        assert_eq!(f16_to_f32(0xc000), -2.0);
        assert_eq!(f16_to_f32(0x3555), 0.333_251_95);
        assert_eq!(f16_to_f32(0x7bff), 65504.0);
        assert_eq!(f16_to_f32(0x0001), 5.960_464_5e-8); // smallest subnormal
        assert_eq!(f16_to_f32(0x8000).to_bits(), (-0.0f32).to_bits());
        assert_eq!(f16_to_f32(0x7c00), f32::INFINITY);
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn bfloat16() {
        assert_eq!(bf16_to_f32(0x3f80), 1.0);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
        assert_eq!(
            half_words_to_f32(&[0x80, 0x3f, 0x40, 0xc0], bf16_to_f32),
            vec![1.0, -3.0]
        );
    }

    #[test]
    fn sparse_round_trip_and_bad_length() {
        let pairs = vec![(1u32, 0.5f32), (4_000_000_000, -1.25)];
        assert_eq!(sparse_row(&encode_sparse_row(&pairs)).unwrap(), pairs);
        assert!(sparse_row(&[0; 7]).unwrap_err().contains("7 bytes"));
        assert!(sparse_row(&[]).unwrap().is_empty());
    }
}
