//! Tests of `files.rs`: header bytes, validation, both file kinds end to end.

use super::*;

fn small() -> ControlLayout {
    ControlLayout {
        commands: 1024,
        responses: 1024,
        counters: 4 * 128,
    }
}

#[test]
fn streams_file_round_trip_both_ways() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ws/streams/tcp");
    let reader = StreamsFile::create(&path, 4096).unwrap();
    let writer = StreamsFile::open(&path).unwrap();
    assert_eq!(
        std::fs::metadata(&path).unwrap().len(),
        64 + 2 * (4096 + 768)
    );
    writer.forward.write(1, &[b"begin"]).unwrap();
    reader
        .throttle
        .write(0x4000_0002, &[&[1, 0, 0, 0]])
        .unwrap();
    let mut got = Vec::new();
    reader.forward.read(10, |t, b| got.push((t, b.to_vec())));
    writer.throttle.read(10, |t, b| got.push((t, b.to_vec())));
    assert_eq!(
        got,
        vec![(1, b"begin".to_vec()), (0x4000_0002, vec![1, 0, 0, 0])]
    );
    // No temporary file is left behind.
    assert_eq!(
        std::fs::read_dir(path.parent().unwrap()).unwrap().count(),
        1
    );
}

#[test]
fn streams_header_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    StreamsFile::create(&path, 64).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"WRSF\x01\0\0\0");
    assert_eq!(&bytes[8..16], &64i64.to_le_bytes());
    assert_eq!(&bytes[16..24], &64i64.to_le_bytes());
    assert_eq!(&bytes[24..64], &[0u8; 40][..]);
}

#[test]
fn bad_streams_files_are_invalid_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    StreamsFile::create(&path, 64).unwrap();
    let good = std::fs::read(&path).unwrap();
    let corrupt = |edit: &dyn Fn(&mut Vec<u8>)| {
        let mut bytes = good.clone();
        edit(&mut bytes);
        std::fs::write(&path, &bytes).unwrap();
        let error = StreamsFile::open(&path).unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::InvalidData, "{error}");
        error.to_string()
    };
    assert!(corrupt(&|b| b[0] = b'X').contains("magic"));
    assert!(corrupt(&|b| b[4] = 2).contains("version"));
    assert!(corrupt(&|b| b.truncate(100)).contains("implies"));
    assert!(corrupt(&|b| b[8] = 65).contains("implies"));
    assert!(corrupt(&|b| b.truncate(10)).contains("header"));
    assert!(corrupt(&|b| b[15] = 0x80).contains("bad length"));
    // A consistent length but a capacity that is not a power of two.
    assert!(corrupt(&|b| {
        b[8] = 72;
        b[16] = 56;
    })
    .contains("power of two"));
    let control = dir.path().join("control");
    ControlFile::create(&control, small()).unwrap();
    std::fs::copy(&control, &path).unwrap();
    assert!(StreamsFile::open(&path)
        .unwrap_err()
        .to_string()
        .contains("magic"));
    assert_eq!(
        StreamsFile::create(&path, 100).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn control_file_commands_responses_counters() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tcp/control");
    let mut owner = ControlFile::create(&path, small()).unwrap();
    let mut client = ControlFile::open(&path).unwrap();
    assert_eq!(client.layout, small());
    assert_eq!(
        std::fs::metadata(&path).unwrap().len() as usize,
        small().file_length()
    );
    assert_eq!(
        small().file_length(),
        64 + 1024 + 768 + 1024 + 128 + 2 * 512
    );

    let id = client.commands.next_correlation_id();
    client
        .commands
        .write(0x01, &[&id.to_le_bytes(), b"ws"])
        .unwrap();
    let mut commands = Vec::new();
    owner
        .commands
        .read(10, |t, b| commands.push((t, b.to_vec())));
    assert_eq!(
        commands,
        vec![(0x01, [&id.to_le_bytes()[..], b"ws"].concat())]
    );

    owner
        .responses
        .transmit(0x4000_0001, &id.to_le_bytes())
        .unwrap();
    let mut responses = Vec::new();
    client
        .responses
        .receive(|t, b| responses.push((t, b.to_vec())));
    assert_eq!(responses, vec![(0x4000_0001, id.to_le_bytes().to_vec())]);

    let counter = owner.counters.allocate("tcp.accepted").unwrap();
    counter.add(3);
    let mut seen = Vec::new();
    client
        .counters
        .for_each(|id, label, value| seen.push((id, label.to_string(), value)));
    assert_eq!(seen, vec![(0, "tcp.accepted".to_string(), 3)]);
    assert_eq!(owner.counters.capacity(), 4);
}

#[test]
fn control_header_bytes_and_validation() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("control");
    ControlFile::create(&path, small()).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..8], b"WRCF\x01\0\0\0");
    let fields: Vec<i64> = bytes[8..40]
        .chunks(8)
        .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(fields, vec![1024, 1024, 512, 512]);
    let mut bad = bytes.clone();
    bad[33] = 1; // values length differs from metadata length
    std::fs::write(&path, &bad).unwrap();
    assert_eq!(
        ControlClient::open(&path).unwrap_err().kind(),
        io::ErrorKind::InvalidData
    );
    let odd = ControlLayout {
        counters: 100,
        ..small()
    };
    assert_eq!(
        ControlFile::create(&path, odd).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
    let default = ControlLayout::default();
    assert_eq!(default.counters_capacity(), 512);
}

#[test]
fn create_replaces_an_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s");
    let old = StreamsFile::create(&path, 64).unwrap();
    old.forward.write(1, &[b"stale"]).unwrap();
    let new = StreamsFile::create(&path, 128).unwrap();
    assert!(new.forward.is_empty());
    assert_eq!(StreamsFile::open(&path).unwrap().forward.capacity(), 128);
}
