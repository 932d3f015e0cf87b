//! A small triplet builder for Clarabel's compressed-sparse-column matrices.
//!
//! Entries are kept even when their value is zero, so the sparsity pattern depends only on the
//! order of `push` calls: a problem rebuilt with new values (a new dt in the LCvx t_f search) has
//! the same pattern and can update a live Clarabel solver in place (`update_A` with the values).

use clarabel::algebra::CscMatrix;

/// Triplets `(row, col, value)` for an `m x n` matrix.
#[derive(Debug, Clone, Default)]
pub struct Triplets {
    m: usize,
    n: usize,
    entries: Vec<(usize, usize, f64)>,
}

impl Triplets {
    /// An empty `m x n` matrix.
    pub fn new(m: usize, n: usize) -> Self {
        Self { m, n, entries: Vec::new() }
    }

    /// Adds `value` at `(row, col)`; duplicates are summed.
    ///
    /// # Panics
    /// If `row >= m` or `col >= n` (a bug in the caller's indexing, not user data).
    pub fn push(&mut self, row: usize, col: usize, value: f64) {
        assert!(row < self.m && col < self.n, "triplet ({row}, {col}) outside {}x{}", self.m, self.n);
        self.entries.push((row, col, value));
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.m
    }

    /// Grows the row count to `m` (rows are appended block by block while building).
    pub fn set_rows(&mut self, m: usize) {
        self.m = self.m.max(m);
    }

    /// The matrix in CSC form (sorted by column, then row; duplicates summed; zeros kept).
    pub fn to_csc(&self) -> CscMatrix<f64> {
        let mut e = self.entries.clone();
        e.sort_by_key(|a| (a.1, a.0));
        let mut colptr = vec![0usize; self.n + 1];
        let mut rowval = Vec::with_capacity(e.len());
        let mut nzval: Vec<f64> = Vec::with_capacity(e.len());
        let mut last: Option<(usize, usize)> = None;
        for (r, c, v) in e {
            if last == Some((r, c)) {
                *nzval.last_mut().expect("duplicate follows an entry") += v;
                continue;
            }
            rowval.push(r);
            nzval.push(v);
            colptr[c + 1] += 1;
            last = Some((r, c));
        }
        for j in 0..self.n {
            colptr[j + 1] += colptr[j];
        }
        CscMatrix::new(self.m, self.n, colptr, rowval, nzval)
    }
}

/// The upper triangle of a dense symmetric matrix as CSC (Clarabel reads only triu(P)).
pub fn dense_triu(p: &nalgebra::DMatrix<f64>) -> CscMatrix<f64> {
    let n = p.nrows();
    let mut t = Triplets::new(n, n);
    for j in 0..n {
        for i in 0..=j {
            t.push(i, j, p[(i, j)]);
        }
    }
    t.to_csc()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duplicates_sum_and_zeros_stay() {
        let mut t = Triplets::new(2, 3);
        t.push(1, 2, 4.0);
        t.push(0, 0, 1.0);
        t.push(1, 0, 0.0);
        t.push(0, 0, 2.0);
        let c = t.to_csc();
        assert_eq!(c.colptr, vec![0, 2, 2, 3]);
        assert_eq!(c.rowval, vec![0, 1, 1]);
        assert_eq!(c.nzval, vec![3.0, 0.0, 4.0]);
    }
}
