//! Middlebury .flo files.

use revstream::flow::{Flow, flo};

fn sample() -> Flow {
    Flow {
        width: 7,
        height: 3,
        u: (0..21).map(|i| i as f32 * 0.25 - 2.0).collect(),
        v: (0..21).map(|i| -(i as f32) * 1.5e-3 + 1e6).collect(),
    }
}

#[test]
fn round_trip_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("a.flo");
    let flow = sample();
    flo::write(&path, &flow).unwrap();
    assert_eq!(flo::read(&path).unwrap(), flow);
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..4], b"PIEH");
    assert_eq!(bytes.len(), 12 + 8 * 21);
    assert_eq!(i32::from_le_bytes(bytes[4..8].try_into().unwrap()), 7);
    assert_eq!(i32::from_le_bytes(bytes[8..12].try_into().unwrap()), 3);
    // Interleaved u, v of the first pixel.
    assert_eq!(
        f32::from_le_bytes(bytes[12..16].try_into().unwrap()),
        flow.u[0]
    );
    assert_eq!(
        f32::from_le_bytes(bytes[16..20].try_into().unwrap()),
        flow.v[0]
    );
}

#[test]
fn bad_files_are_refused() {
    let mut good = Vec::new();
    flo::write_to(&mut good, &sample()).unwrap();
    let mut bad_magic = good.clone();
    bad_magic[0] = b'X';
    assert_eq!(
        flo::read_from(&bad_magic[..]).unwrap_err().kind(),
        std::io::ErrorKind::InvalidData
    );
    let truncated = &good[..good.len() - 3];
    assert!(flo::read_from(truncated).is_err());
    // A header claiming 2^31 x 2^31 pixels is refused before allocating.
    let mut huge = good[..4].to_vec();
    huge.extend_from_slice(&i32::MAX.to_le_bytes());
    huge.extend_from_slice(&i32::MAX.to_le_bytes());
    assert!(flo::read_from(&huge[..]).is_err());
    let mut negative = good[..4].to_vec();
    negative.extend_from_slice(&(-1i32).to_le_bytes());
    negative.extend_from_slice(&3i32.to_le_bytes());
    assert!(flo::read_from(&negative[..]).is_err());
    let mismatched = Flow {
        width: 4,
        height: 4,
        u: vec![0.0; 3],
        v: vec![0.0; 16],
    };
    assert!(flo::write_to(&mut Vec::new(), &mismatched).is_err());
}
