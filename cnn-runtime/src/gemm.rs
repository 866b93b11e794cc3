//! The one place that calls into `matrixmultiply`: a safe wrapper whose
//! checks make the raw-pointer call sound.
#![allow(unsafe_code)]

/// A read-only row-major-or-strided matrix inside a slice.
#[derive(Clone, Copy, Debug)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

/// A writable strided matrix inside a slice: of floats, or of the
/// `MaybeUninit<f32>` of an output not written yet.
#[derive(Debug)]
pub struct MatMut<'a, T = f32> {
    pub data: &'a mut [T],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// A dense row-major `rows x cols` matrix.
    pub fn row_major(data: &'a [f32], rows: usize, cols: usize) -> Self {
        MatRef { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// `rows x cols` from `data[0]`, rows `row_stride` apart: a block of
    /// columns of a wider row-major matrix.
    pub fn block(data: &'a [f32], rows: usize, cols: usize, row_stride: usize) -> Self {
        MatRef { data, rows, cols, row_stride, col_stride: 1 }
    }

    /// The transpose of the `cols x rows` block at `data[0]` of a row-major
    /// matrix whose rows are `stride` apart.
    pub fn transposed(data: &'a [f32], rows: usize, cols: usize, stride: usize) -> Self {
        MatRef { data, rows, cols, row_stride: 1, col_stride: stride }
    }
}

impl<'a, T> MatMut<'a, T> {
    /// A dense row-major `rows x cols` matrix.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        MatMut { data, rows, cols, row_stride: cols, col_stride: 1 }
    }

    /// `rows x cols` from `data[0]`, rows `row_stride` apart.
    pub fn block(data: &'a mut [T], rows: usize, cols: usize, row_stride: usize) -> Self {
        MatMut { data, rows, cols, row_stride, col_stride: 1 }
    }
}

/// Whether every element `(i, j)` with `i < rows`, `j < cols` lies inside `len`.
fn fits(len: usize, rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    let last = (rows - 1)
        .checked_mul(row_stride)
        .and_then(|r| (cols - 1).checked_mul(col_stride).and_then(|c| r.checked_add(c)));
    matches!(last, Some(last) if last < len)
        && row_stride <= isize::MAX as usize
        && col_stride <= isize::MAX as usize
}

/// Whether no two elements `(i, j)` of a `rows x cols` matrix with these
/// strides share a place: matrixmultiply writes each of C once and reads it
/// back, so aliased elements of C would be a data race with itself.
fn distinct(rows: usize, cols: usize, row_stride: usize, col_stride: usize) -> bool {
    let span = |n: usize, stride: usize| (n - 1).saturating_mul(stride).saturating_add(1);
    match (rows, cols) {
        (1, 1) => true,
        (1, _) => col_stride != 0,
        (_, 1) => row_stride != 0,
        // Rows laid out one after the other, or columns.
        _ => {
            (col_stride != 0 && row_stride >= span(cols, col_stride))
                || (row_stride != 0 && col_stride >= span(rows, row_stride))
        }
    }
}

/// `c = alpha * a * b + beta * c`.
///
/// Panics if the dimensions disagree, a matrix does not fit in its slice or
/// the strides of `c` alias: those are bugs of the caller, never of user input.
pub(crate) fn sgemm(alpha: f32, a: MatRef<'_>, b: MatRef<'_>, beta: f32, c: MatMut<'_>) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(b.rows == k && c.rows == m && c.cols == n, "sgemm: mismatched dimensions");
    if m == 0 || n == 0 {
        return;
    }
    assert!(fits(c.data.len(), m, n, c.row_stride, c.col_stride), "sgemm: c out of bounds");
    assert!(distinct(m, n, c.row_stride, c.col_stride), "sgemm: c's strides alias");
    if k == 0 {
        for i in 0..m {
            for j in 0..n {
                let v = &mut c.data[i * c.row_stride + j * c.col_stride];
                *v = if beta == 0.0 { 0.0 } else { beta * *v };
            }
        }
        return;
    }
    assert!(fits(a.data.len(), m, k, a.row_stride, a.col_stride), "sgemm: a out of bounds");
    assert!(fits(b.data.len(), k, n, b.row_stride, b.col_stride), "sgemm: b out of bounds");
    // SAFETY: the asserts above guarantee that every element matrixmultiply
    // reads, a[i*rsa + l*csa] for i < m, l < k and b[l*rsb + j*csb] for
    // l < k, j < n, and every element it writes, c[i*rsc + j*csc], lies
    // inside its slice, and that each stride fits in isize; no two elements
    // of `c` are one place. `c` is borrowed mutably, so it cannot alias `a`
    // or `b`.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.data.as_ptr(),
            a.row_stride as isize,
            a.col_stride as isize,
            b.data.as_ptr(),
            b.row_stride as isize,
            b.col_stride as isize,
            beta,
            c.data.as_mut_ptr(),
            c.row_stride as isize,
            c.col_stride as isize,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(m: usize, k: usize, n: usize, a: &[f32], b: &[f32]) -> Vec<f32> {
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                c[i * n + j] = (0..k).map(|l| a[i * k + l] * b[l * n + j]).sum();
            }
        }
        c
    }

    #[test]
    fn matches_naive_on_small_and_odd_sizes() {
        for (m, k, n) in [(1, 1, 1), (3, 5, 7), (17, 9, 33), (64, 1, 2), (5, 0, 3)] {
            // Whole numbers: sums are exact in f32.
            let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 - 3.0).collect();
            let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 - 2.0).collect();
            let mut c = vec![f32::NAN; m * n];
            sgemm(
                1.0,
                MatRef::row_major(&a, m, k),
                MatRef::row_major(&b, k, n),
                0.0,
                MatMut::row_major(&mut c, m, n),
            );
            assert_eq!(c, naive(m, k, n, &a, &b), "{m}x{k}x{n}");
        }
    }

    #[test]
    #[should_panic(expected = "alias")]
    fn refuses_a_c_whose_rows_overlap() {
        let a = [1.0; 4];
        let mut c = [0.0; 4];
        let c = MatMut { data: &mut c, rows: 2, cols: 2, row_stride: 1, col_stride: 1 };
        sgemm(1.0, MatRef::row_major(&a, 2, 2), MatRef::row_major(&a, 2, 2), 0.0, c);
    }

    #[test]
    #[should_panic(expected = "alias")]
    fn refuses_a_c_with_a_zero_stride() {
        let a = [1.0; 4];
        let mut c = [0.0; 4];
        let c = MatMut { data: &mut c, rows: 2, cols: 2, row_stride: 0, col_stride: 1 };
        sgemm(1.0, MatRef::row_major(&a, 2, 2), MatRef::row_major(&a, 2, 2), 0.0, c);
    }

    #[test]
    fn accepts_row_and_column_major_c() {
        assert!(distinct(3, 4, 4, 1) && distinct(3, 4, 1, 3) && distinct(3, 4, 8, 2));
        assert!(!distinct(3, 4, 3, 1) && !distinct(3, 4, 1, 2) && !distinct(2, 2, 0, 0));
    }

    #[test]
    #[should_panic(expected = "out of bounds")]
    fn refuses_a_matrix_larger_than_its_slice() {
        let a = [0.0; 5];
        let mut c = [0.0; 4];
        sgemm(
            1.0,
            MatRef::row_major(&a, 2, 3),
            MatRef::row_major(&a, 3, 2),
            0.0,
            MatMut::row_major(&mut c, 2, 2),
        );
    }
}
