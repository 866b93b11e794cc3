//! Real data sets: MNIST and Fashion-MNIST in IDX files (plain or gzip), and
//! the UCI/scikit-learn digits set in CSV (plain or gzip).
//!
//! Images come as NHWC `Array4<f32>` scaled to `[0, 1]`, labels as `usize`.
//! IDX: a big-endian u32 magic (`0x00000803` images, `0x00000801` labels),
//! u32 counts and dimensions, then one byte a value.

use std::io::Read;
use std::path::{Path, PathBuf};

use ndarray::Array4;

use crate::Error;

/// Images and their labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    /// `(N, H, W, 1)`, values in `[0, 1]`.
    pub images: Array4<f32>,
    pub labels: Vec<usize>,
}

impl Dataset {
    /// The number of images.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The images and labels at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Dataset {
        Dataset {
            images: self.images.select(ndarray::Axis(0), indices),
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
        }
    }
}

fn bad(path: &Path, reason: impl Into<String>) -> Error {
    Error::DataFile { path: path.to_path_buf(), reason: reason.into() }
}

/// The bytes of a file, gunzipped if it starts with gzip's magic.
fn read_bytes(path: &Path) -> Result<Vec<u8>, Error> {
    let raw = std::fs::read(path).map_err(|source| Error::Io { path: path.into(), source })?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut bytes = Vec::new();
        flate2::read::MultiGzDecoder::new(&raw[..])
            .read_to_end(&mut bytes)
            .map_err(|e| bad(path, format!("corrupt or truncated gzip: {e}")))?;
        Ok(bytes)
    } else {
        Ok(raw)
    }
}

/// The header of an IDX file: its dimensions, after checking the magic.
fn idx_header<'a>(
    path: &Path,
    bytes: &'a [u8],
    magic: u32,
    dims: usize,
) -> Result<(Vec<usize>, &'a [u8]), Error> {
    let header_len = 4 + 4 * dims;
    if bytes.len() < header_len {
        return Err(bad(
            path,
            format!("truncated: {} bytes, shorter than the {header_len}-byte IDX header", bytes.len()),
        ));
    }
    let word = |i: usize| u32::from_be_bytes(bytes[4 * i..4 * i + 4].try_into().expect("4 bytes")) as usize;
    if word(0) != magic as usize {
        return Err(bad(path, format!("wrong magic number {:#010x}, expected {magic:#010x}", word(0))));
    }
    let sizes: Vec<usize> = (1..=dims).map(word).collect();
    let body = &bytes[header_len..];
    let expected =
        sizes.iter().try_fold(1usize, |a, &s| a.checked_mul(s)).ok_or_else(|| bad(path, "sizes overflow"))?;
    if body.len() != expected {
        let what = if body.len() < expected { "truncated" } else { "too long" };
        return Err(bad(
            path,
            format!("{what}: the header gives {sizes:?} = {expected} values, the file holds {}", body.len()),
        ));
    }
    Ok((sizes, body))
}

/// An IDX image file (`0x00000803`) as `(N, H, W, 1)` in `[0, 1]`.
pub fn read_idx_images(path: impl AsRef<Path>) -> Result<Array4<f32>, Error> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let (sizes, body) = idx_header(path, &bytes, 0x0803, 3)?;
    let values = body.iter().map(|&b| b as f32 / 255.0).collect();
    Ok(Array4::from_shape_vec((sizes[0], sizes[1], sizes[2], 1), values).expect("the length was checked"))
}

/// An IDX label file (`0x00000801`).
pub fn read_idx_labels(path: impl AsRef<Path>) -> Result<Vec<usize>, Error> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let (_, body) = idx_header(path, &bytes, 0x0801, 1)?;
    Ok(body.iter().map(|&b| b as usize).collect())
}

/// Images and labels from a pair of IDX files, whose counts must agree.
pub fn read_idx(images: impl AsRef<Path>, labels: impl AsRef<Path>) -> Result<Dataset, Error> {
    let (image_path, label_path) = (images.as_ref(), labels.as_ref());
    let images = read_idx_images(image_path)?;
    let labels = read_idx_labels(label_path)?;
    if images.dim().0 != labels.len() {
        let reason =
            format!("{} labels for the {} images of {}", labels.len(), images.dim().0, image_path.display());
        return Err(bad(label_path, reason));
    }
    Ok(Dataset { images, labels })
}

/// MNIST or Fashion-MNIST in `dir`: its training and test sets, from the
/// four files under their usual names, gzipped (`.gz`) or not.
pub fn read_mnist(dir: impl AsRef<Path>) -> Result<(Dataset, Dataset), Error> {
    let dir = dir.as_ref();
    let file = |name: &str| -> PathBuf {
        let gz = dir.join(format!("{name}.gz"));
        if gz.exists() { gz } else { dir.join(name) }
    };
    let train = read_idx(file("train-images-idx3-ubyte"), file("train-labels-idx1-ubyte"))?;
    let test = read_idx(file("t10k-images-idx3-ubyte"), file("t10k-labels-idx1-ubyte"))?;
    Ok((train, test))
}

/// The digits CSV of scikit-learn (`sklearn/datasets/data/digits.csv.gz`):
/// rows of 64 pixels (8x8, 0 to 16) then the label, as `(N, 8, 8, 1)` in `[0, 1]`.
pub fn read_digits(path: impl AsRef<Path>) -> Result<Dataset, Error> {
    let path = path.as_ref();
    let bytes = read_bytes(path)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad(path, "not text"))?;
    let (mut values, mut labels) = (Vec::new(), Vec::new());
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != 65 {
            return Err(bad(
                path,
                format!("line {}: {} fields, expected 64 pixels and a label", number + 1, fields.len()),
            ));
        }
        let parse = |f: &str, max: f32| match f.parse::<f32>() {
            Ok(v) if (0.0..=max).contains(&v) && v.fract() == 0.0 => Ok(v),
            _ => Err(bad(path, format!("line {}: `{f}` is not a whole number from 0 to {max}", number + 1))),
        };
        for f in &fields[..64] {
            values.push(parse(f, 16.0)? / 16.0);
        }
        labels.push(parse(fields[64], 9.0)? as usize);
    }
    if labels.is_empty() {
        return Err(bad(path, "no rows"));
    }
    let images = Array4::from_shape_vec((labels.len(), 8, 8, 1), values).expect("64 values a row");
    Ok(Dataset { images, labels })
}
