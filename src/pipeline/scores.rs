//! From a model's probability rows to an answer: the segments' mean and the best classes.

/// The mean of the rows (the segments' consensus).
pub fn mean_rows(rows: &[Vec<f32>]) -> Vec<f32> {
    let width = rows.first().map_or(0, Vec::len);
    let mut mean = vec![0.0; width];
    for row in rows {
        for (m, v) in mean.iter_mut().zip(row) {
            *m += v / rows.len() as f32;
        }
    }
    mean
}

/// The `k` most probable classes of `probabilities` as `(index, probability)`, best first.
pub fn ranked(probabilities: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut order: Vec<usize> = (0..probabilities.len()).collect();
    order.sort_by(|&a, &b| probabilities[b].total_cmp(&probabilities[a]));
    order
        .into_iter()
        .take(k)
        .map(|i| (i, probabilities[i]))
        .collect()
}
