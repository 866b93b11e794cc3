//! The data readers on the real files, and on broken ones.

use std::path::PathBuf;

use cnn::data::{read_digits, read_idx, read_idx_images, read_idx_labels, read_mnist};

const DATA: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/data");

fn temp(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnn-data-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn mnist_reads_whole_with_known_first_labels() {
    let (train, test) = read_mnist(format!("{DATA}/mnist")).unwrap();
    assert_eq!(train.images.dim(), (60_000, 28, 28, 1));
    assert_eq!(test.images.dim(), (10_000, 28, 28, 1));
    // The first training digit is a 5, the first test digit a 7.
    assert_eq!((&train.labels[..3], &test.labels[..3]), (&[5, 0, 4][..], &[7, 2, 1][..]));
    assert!(train.images.iter().all(|&v| (0.0..=1.0).contains(&v)));
    assert_eq!(train.images.iter().cloned().fold(0.0, f32::max), 1.0);
    let counts = (0..10).map(|d| train.labels.iter().filter(|&&l| l == d).count()).collect::<Vec<_>>();
    assert_eq!(counts, [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]);
}

#[test]
fn digits_read_as_8x8_images() {
    let digits = read_digits(format!("{DATA}/digits/digits.csv.gz")).unwrap();
    assert_eq!(digits.images.dim(), (1797, 8, 8, 1));
    assert_eq!(&digits.labels[..3], &[0, 1, 2]);
    assert_eq!(digits.images[[0, 0, 2, 0]], 5.0 / 16.0);
}

#[test]
fn plain_idx_files_read_too() {
    let mut bytes = vec![0, 0, 8, 1, 0, 0, 0, 3];
    bytes.extend([4, 0, 9]);
    assert_eq!(read_idx_labels(temp("labels", &bytes)).unwrap(), [4, 0, 9]);
    let mut images = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 2];
    images.extend([0, 255, 51, 0, 255, 255]);
    let images = read_idx_images(temp("images", &images)).unwrap();
    assert_eq!(images.dim(), (3, 1, 2, 1));
    assert_eq!(images[[1, 0, 0, 0]], 0.2);
}

#[test]
fn broken_files_are_errors_naming_the_file() {
    let labels = temp("wrong-magic", &[0, 0, 8, 3, 0, 0, 0, 1, 7]);
    let err = read_idx_labels(&labels).unwrap_err().to_string();
    assert!(err.contains("wrong-magic") && err.contains("magic"), "{err}");
    let truncated = temp("truncated", &[0, 0, 8, 1, 0, 0, 0, 5, 1, 2]);
    let err = read_idx_labels(&truncated).unwrap_err().to_string();
    assert!(err.contains("truncated") && err.contains("5"), "{err}");
    let short = temp("short", &[0, 0, 8]);
    assert!(read_idx_labels(&short).unwrap_err().to_string().contains("short"));
    let two_labels = temp("two-labels", &[0, 0, 8, 1, 0, 0, 0, 2, 1, 2]);
    let three_images = temp("three-images", &[0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0, 1, 1, 2, 3]);
    let err = read_idx(&three_images, &two_labels).unwrap_err().to_string();
    assert!(err.contains("2 labels for the 3 images"), "{err}");
    let bad_gzip = temp("bad.gz", &[0x1f, 0x8b, 8, 0, 1, 2, 3]);
    assert!(read_idx_labels(&bad_gzip).unwrap_err().to_string().contains("gzip"));
    assert!(matches!(read_idx_labels(temp("x", b"")).unwrap_err(), cnn::Error::DataFile { .. }));
    assert!(matches!(read_digits("no/such/file.csv"), Err(cnn::Error::Io { .. })));
    let csv = temp("digits.csv", b"1,2,3\n");
    assert!(
        read_digits(&csv).unwrap_err().to_string().contains("65")
            || read_digits(&csv).unwrap_err().to_string().contains("fields")
    );
}
