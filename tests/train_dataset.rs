//! Dataset readers: folder per class, UCF101 lists and CSV, each with bad entries.

use std::fs;
use std::path::Path;

use revstream::train::dataset::Dataset;

fn touch(path: &Path) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, b"not decoded here").unwrap();
}

#[test]
fn folder_per_class_reads_sorted_labels_and_skips_non_videos() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (label, n) in [("wave", 3), ("grow", 2)] {
        for i in 0..n {
            touch(&root.join(label).join(format!("{i}.mp4")));
        }
    }
    touch(&root.join("grow").join("notes.txt"));
    let ds = Dataset::open(root).unwrap();
    assert_eq!(ds.labels, ["grow", "wave"]);
    assert_eq!(ds.class_counts(), [2, 3]);
    assert_eq!(ds.skipped.len(), 1);
    assert!(ds.skipped[0].entry.ends_with("notes.txt"));
    assert!(
        ds.samples
            .iter()
            .all(|s| s.path.starts_with(root.join(&ds.labels[s.label])))
    );
}

#[test]
fn empty_or_missing_folder_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    assert!(Dataset::open(dir.path()).is_err());
    assert!(Dataset::open(&dir.path().join("nope")).is_err());
}

#[test]
fn ucf101_lists_with_and_without_indices() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("classInd.txt"), "1 ApplyLipstick\n2 Archery\n").unwrap();
    touch(&root.join("ApplyLipstick/v_a.avi"));
    touch(&root.join("Archery/v_b.avi"));
    touch(&root.join("Archery/v_c.avi"));
    fs::write(
        root.join("trainlist01.txt"),
        "ApplyLipstick/v_a.avi 1\nArchery/v_b.avi 2\nArchery/missing.avi 2\nArchery/v_c.avi 9\n",
    )
    .unwrap();
    fs::write(
        root.join("testlist01.txt"),
        "Archery/v_c.avi\nBowling/v_d.avi\n",
    )
    .unwrap();

    let train = Dataset::open(&root.join("trainlist01.txt")).unwrap();
    assert_eq!(train.labels, ["ApplyLipstick", "Archery"]);
    assert_eq!(
        train.samples.iter().map(|s| s.label).collect::<Vec<_>>(),
        [0, 1]
    );
    // missing file and out-of-range class index
    assert_eq!(train.skipped.len(), 2);

    let test = Dataset::open(&root.join("testlist01.txt")).unwrap();
    assert_eq!(test.samples.len(), 1);
    assert_eq!(test.samples[0].label, 1);
    assert_eq!(test.skipped.len(), 1);
    assert_eq!(test.skipped[0].reason, "unknown class");

    // A folder with classInd.txt and trainlist01.txt reads as the train list.
    assert_eq!(Dataset::open(root).unwrap(), train);
}

#[test]
fn ucf101_bad_class_index_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("classInd.txt"), "1 A\n3 B\n").unwrap();
    fs::write(dir.path().join("trainlist01.txt"), "A/x.avi 1\n").unwrap();
    assert!(Dataset::open(&dir.path().join("trainlist01.txt")).is_err());
}

#[test]
fn csv_with_header_quotes_and_bad_lines() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    touch(&root.join("clips/a.mp4"));
    touch(&root.join("clips/b, with comma.mp4"));
    fs::write(
        root.join("list.csv"),
        "path,label\nclips/a.mp4,still\n\"clips/b, with comma.mp4\",grow\nno comma here\nclips/gone.mp4,grow\n,grow\n",
    )
    .unwrap();
    let ds = Dataset::open(&root.join("list.csv")).unwrap();
    assert_eq!(ds.labels, ["grow", "still"]);
    assert_eq!(ds.samples.len(), 2);
    assert_eq!(ds.samples[0].label, 1);
    assert!(ds.samples[1].path.ends_with("b, with comma.mp4"));
    assert_eq!(ds.skipped.len(), 3, "{:?}", ds.skipped);
}

#[test]
fn split_is_stratified_seeded_and_disjoint() {
    let dir = tempfile::tempdir().unwrap();
    for label in ["a", "b", "c"] {
        for i in 0..10 {
            touch(&dir.path().join(label).join(format!("{i}.mp4")));
        }
    }
    let ds = Dataset::open(dir.path()).unwrap();
    let (train, val) = ds.split(0.2, 42);
    assert_eq!(val.class_counts(), [2, 2, 2]);
    assert_eq!(train.class_counts(), [8, 8, 8]);
    assert!(val.samples.iter().all(|v| !train.samples.contains(v)));
    assert_eq!(ds.split(0.2, 42), (train.clone(), val.clone()));
    assert_ne!(ds.split(0.2, 43).1, val);
}
