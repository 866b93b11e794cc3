//! `save` and `load`: round trips, and every bad file an `Err`, never a panic.

mod common;

#[path = "../examples/seeds/nets.rs"]
mod nets;

use std::path::PathBuf;

use cnn::Error;
use common::{random4, rng};
use nets::{Cifar3Block, LeNet5};
use rand::Rng;
use safetensors::tensor::{Dtype, TensorView};

fn temp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("cnn-weights-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn saved_lenet(name: &str) -> (PathBuf, Vec<u8>) {
    let path = temp_path(name);
    LeNet5::with_seed(5).save(&path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    (path, bytes)
}

#[test]
fn a_round_trip_gives_bit_identical_outputs() {
    let mut net = Cifar3Block::with_seed(9);
    let mut r = rng(30);
    net.bn2.running_mean_mut().mapv_inplace(|_| r.random_range(-1.0..1.0));
    net.bn2.running_var_mut().mapv_inplace(|_| r.random_range(0.5..2.0));
    let path = temp_path("cifar.safetensors");
    net.save(&path).unwrap();
    let loaded = Cifar3Block::load(&path).unwrap();
    let x = random4(&mut r, (3, 32, 32, 3));
    assert_eq!(net.forward(x.view()).unwrap(), loaded.forward(x.view()).unwrap());
    assert_eq!(net.bn2.running_var(), loaded.bn2.running_var());
    assert_eq!(net.conv3.weight(), loaded.conv3.weight());
}

#[test]
fn saved_keys_and_layouts_are_documented_ones() {
    let (_, bytes) = saved_lenet("keys.safetensors");
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut names = file.names();
    names.sort();
    let expected =
        ["conv1.bias", "conv1.weight", "conv2.bias", "conv2.weight", "dense1.bias", "dense1.weight"];
    assert_eq!(&names[..6], expected);
    assert_eq!(file.tensor("conv2.weight").unwrap().shape(), [5, 5, 6, 16]);
    assert_eq!(file.tensor("dense1.weight").unwrap().shape(), [400, 120]);
    assert_eq!(file.tensor("dense3.bias").unwrap().dtype(), Dtype::F32);
}

#[test]
fn missing_empty_and_foreign_files_are_distinct_errors() {
    let missing = LeNet5::load(temp_path("does-not-exist.safetensors")).err().unwrap();
    assert!(matches!(missing, Error::Io { .. }), "{missing}");
    let empty = temp_path("empty.safetensors");
    std::fs::write(&empty, b"").unwrap();
    assert!(matches!(LeNet5::load(&empty), Err(Error::EmptyFile { .. })));
    let text = temp_path("text.safetensors");
    std::fs::write(&text, b"\x10\0\0\0\0\0\0\0not json at all!").unwrap();
    assert!(matches!(LeNet5::load(&text), Err(Error::CorruptFile { .. })));
}

#[test]
fn every_truncation_is_an_error() {
    let (path, bytes) = saved_lenet("truncated.safetensors");
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // Every length through the header, then a spread through the data.
    let lengths = (1..header_end + 16).chain((header_end..bytes.len()).step_by(997));
    for len in lengths {
        std::fs::write(&path, &bytes[..len]).unwrap();
        let result = LeNet5::load(&path);
        assert!(
            matches!(result, Err(Error::TruncatedFile { .. } | Error::CorruptFile { .. })),
            "length {len}: {:?}",
            result.err()
        );
    }
}

#[test]
fn flipped_bytes_and_huge_headers_never_panic() {
    let (path, bytes) = saved_lenet("flipped.safetensors");
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let mut r = rng(31);
    for _ in 0..400 {
        let mut mutated = bytes.clone();
        for _ in 0..r.random_range(1..4) {
            // Mostly in the header, where a flip changes the meaning.
            let at = if r.random_bool(0.8) {
                r.random_range(0..header_end)
            } else {
                r.random_range(0..bytes.len())
            };
            mutated[at] ^= 1 << r.random_range(0..8);
        }
        std::fs::write(&path, &mutated).unwrap();
        let _ = LeNet5::load(&path); // Ok (a flip in the data) or Err, never a panic
    }
    for claimed in [u64::MAX, 1 << 40, bytes.len() as u64] {
        let mut mutated = bytes.clone();
        mutated[..8].copy_from_slice(&claimed.to_le_bytes());
        std::fs::write(&path, &mutated).unwrap();
        assert!(LeNet5::load(&path).is_err(), "header length {claimed}");
    }
    let huge_shape =
        String::from_utf8_lossy(&bytes[8..header_end]).replace("[400,120]", "[400000000000,120000000000]");
    let mut mutated = (huge_shape.len() as u64).to_le_bytes().to_vec();
    mutated.extend(huge_shape.as_bytes());
    mutated.extend(&bytes[header_end..]);
    std::fs::write(&path, &mutated).unwrap();
    assert!(LeNet5::load(&path).is_err());
}

/// Rewrites the saved LeNet-5 with `edit` applied to its tensors.
fn rewritten(name: &str, edit: impl FnOnce(&mut Vec<(String, Dtype, Vec<usize>, Vec<u8>)>)) -> PathBuf {
    let (path, bytes) = saved_lenet(name);
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = file
        .tensors()
        .into_iter()
        .map(|(n, t)| (n, t.dtype(), t.shape().to_vec(), t.data().to_vec()))
        .collect();
    edit(&mut tensors);
    let views = tensors.iter().map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()));
    std::fs::write(&path, safetensors::serialize(views, None).unwrap()).unwrap();
    path
}

#[test]
fn missing_unexpected_misshapen_and_integer_tensors_are_named() {
    let path = rewritten("missing.safetensors", |t| t.retain(|(n, ..)| n != "dense2.bias"));
    let err = LeNet5::load(&path).err().unwrap();
    assert!(
        matches!(&err, Error::MissingTensor { name, expected, .. } if name == "dense2.bias" && expected == &[84]),
        "{err}"
    );

    let path =
        rewritten("extra.safetensors", |t| t.push(("dense4.bias".into(), Dtype::F32, vec![1], vec![0; 4])));
    let err = LeNet5::load(&path).err().unwrap();
    assert!(matches!(&err, Error::UnexpectedTensor { name, .. } if name == "dense4.bias"), "{err}");

    let path = rewritten("shape.safetensors", |t| {
        let conv = t.iter_mut().find(|(n, ..)| n == "conv1.weight").unwrap();
        conv.2 = vec![5, 5, 6, 1];
    });
    let err = LeNet5::load(&path).err().unwrap();
    assert!(err.to_string().contains("conv1.weight") && err.to_string().contains("[5, 5, 1, 6]"), "{err}");
    assert!(matches!(&err, Error::TensorShape { found, .. } if found == &[5, 5, 6, 1]));

    let path = rewritten("dtype.safetensors", |t| {
        let bias = t.iter_mut().find(|(n, ..)| n == "conv1.bias").unwrap();
        bias.1 = Dtype::I32;
    });
    let err = LeNet5::load(&path).err().unwrap();
    assert!(
        matches!(&err, Error::TensorDtype { name, dtype, .. } if name == "conv1.bias" && dtype == "I32"),
        "{err}"
    );
}

#[test]
fn saving_to_an_unwritable_path_is_an_error() {
    let dir = temp_path("a-directory");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(LeNet5::new().save(&dir), Err(Error::Io { .. })));
}
