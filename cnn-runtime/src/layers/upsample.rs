//! Nearest-neighbour upsampling by whole factors, `nn.Upsample(scale_factor=S,
//! mode='nearest')`: output pixel `(y, x)` is input pixel `(y / sh, x / sw)`.

/// Upsamples the NHWC images of `x`, each `h x w x c`, by `(sh, sw)` into `out`.
pub(crate) fn upsample(
    x: &[f32],
    (h, w, c): (usize, usize, usize),
    (sh, sw): (usize, usize),
    out: &mut [f32],
) {
    let row = w * sw * c;
    for (image, out) in x.chunks_exact(h * w * c).zip(out.chunks_exact_mut(h * sh * row)) {
        for (input_row, out_rows) in image.chunks_exact(w * c).zip(out.chunks_exact_mut(sh * row)) {
            let (first, rest) = out_rows.split_at_mut(row);
            for (pixel, out_pixels) in input_row.chunks_exact(c).zip(first.chunks_exact_mut(sw * c)) {
                out_pixels.chunks_exact_mut(c).for_each(|o| o.copy_from_slice(pixel));
            }
            rest.chunks_exact_mut(row).for_each(|copy| copy.copy_from_slice(first));
        }
    }
}

/// The gradient of the input from `dy`, the output's: each input value
/// gets the sum of the `sh * sw` values it was copied to.
pub(crate) fn upsample_backward(
    dy: &[f32],
    (h, w, c): (usize, usize, usize),
    (sh, sw): (usize, usize),
    dx: &mut [f32],
) {
    dx.fill(0.0);
    let (ow, image_len) = (w * sw, h * w * c);
    for (image, dx) in dy.chunks_exact(image_len * sh * sw).zip(dx.chunks_exact_mut(image_len)) {
        for (oy, out_row) in image.chunks_exact(ow * c).enumerate() {
            for (ox, pixel) in out_row.chunks_exact(c).enumerate() {
                let at = ((oy / sh) * w + ox / sw) * c;
                dx[at..at + c].iter_mut().zip(pixel).for_each(|(d, g)| *d += g);
            }
        }
    }
}
