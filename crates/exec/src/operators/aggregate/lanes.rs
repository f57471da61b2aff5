//! Per-group addition for aggregates with few groups, in independent lanes.
//!
//! Adding row after row into `sums[group]` makes every add wait for the previous add to the
//! same group to reach memory and come back (a store-to-load round trip of ~5 cycles). With
//! few groups — TPC-H Q1 has four — nearly every row waits so: SUM and COUNT were a fifth of
//! Q1's time. Rows `i`, `i + 1`, `i + 2`, `i + 3` go to [`LANES`] separate copies of the
//! sums instead, so four chains advance side by side; the copies are added into the real
//! sums once per batch. Only for exact (integer) addition, whose result does not depend on
//! the order of the adds.

use super::sum::SumNative;

/// Independent partial sums per group.
const LANES: usize = 4;

/// The most groups summed in lanes: `LANES` copies of this many sums (1 KiB for 128-bit
/// decimals) are cleared and merged per batch at a cost small next to the batch's rows.
pub(super) const FEW_GROUPS: usize = 16;
const _: () = assert!(FEW_GROUPS.is_power_of_two());

/// Adds the `i`-th of `values` into `sums[groups[i]]` for every row `i` and, when `seen` is
/// given (SUM needs it, COUNT does not), marks `seen[groups[i]]`; `sums.len()` must be at
/// most [`FEW_GROUPS`] and every group below it, `values` at least as long as `groups`. Returns whether any add overflowed (wrapping adds
/// are associative, so the sums are the same as adding row by row whenever nothing
/// overflowed).
pub(super) fn add_in_lanes<N: SumNative>(
    sums: &mut [N],
    mut seen: Option<&mut [bool; FEW_GROUPS]>,
    groups: &[usize],
    mut values: impl Iterator<Item = N>,
) -> bool {
    debug_assert!(sums.len() <= FEW_GROUPS);
    let mut lanes = [[N::default(); FEW_GROUPS]; LANES];
    let mut overflowed = false;
    let mut add = |lane: usize, g: usize, v: N| {
        // `g` is below FEW_GROUPS (a power of two): the remainder only spares a bounds check.
        let g = g % FEW_GROUPS;
        let (sum, o) = lanes[lane][g].overflowing_sum(v);
        lanes[lane][g] = sum;
        overflowed |= o;
        if let Some(seen) = seen.as_deref_mut() {
            seen[g] = true;
        }
    };
    let mut chunks = groups.chunks_exact(LANES);
    for chunk in &mut chunks {
        for (lane, &g) in chunk.iter().enumerate() {
            add(lane, g, values.next().unwrap_or_default());
        }
    }
    for &g in chunks.remainder() {
        add(0, g, values.next().unwrap_or_default());
    }
    for (g, total) in sums.iter_mut().enumerate() {
        for lane in &lanes {
            let (sum, o) = total.overflowing_sum(lane[g]);
            *total = sum;
            overflowed |= o;
        }
    }
    overflowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lanes_sum_like_row_by_row_for_every_batch_length() {
        for rows in [0usize, 1, 3, 4, 5, 17, 1000] {
            let groups: Vec<usize> = (0..rows).map(|i| (i * 7 + i / 3) % 5).collect();
            let mut sums = vec![10i128; 6];
            let mut seen = [false; FEW_GROUPS];
            let values = (0..rows).map(|i| i as i128 - 3);
            let overflowed = add_in_lanes(&mut sums, Some(&mut seen), &groups, values);
            let mut want = vec![10i128; 6];
            for (i, &g) in groups.iter().enumerate() {
                want[g] += i as i128 - 3;
            }
            assert!(!overflowed);
            assert_eq!(sums, want, "{rows} rows");
            for (g, &seen) in seen.iter().enumerate() {
                assert_eq!(seen, groups.contains(&g), "{rows} rows, group {g}");
            }
        }
    }

    #[test]
    fn overflow_is_reported() {
        let mut sums = vec![i64::MAX - 1];
        assert!(add_in_lanes(
            &mut sums,
            None,
            &[0, 0, 0],
            [1i64; 3].into_iter()
        ));
    }
}
