//! `balance: p2c_ewma`: the power of two choices over peak-EWMA latency (as Finagle
//! and linkerd balance). Two distinct backends are drawn at random among those that may
//! be chosen; the one with the lower latency × (in-flight + 1), per unit of weight,
//! wins. Drawing two rather than scanning for the best keeps a herd from piling onto
//! the one backend that looked best a moment ago, and a slow backend still gets
//! the odd request, which lets its record recover.

use super::ewma;

/// What [`pick`] needs to know of backend `i`: `(cost, in-flight, weight)`.
pub(crate) type Probe<'a> = &'a dyn Fn(usize) -> (f64, usize, f64);

/// Picks among the `n` backends `eligible` accepts; `None` when there is none.
/// `rand(k)` returns a random number below `k`.
pub(crate) fn pick(
    n: usize,
    eligible: impl Fn(usize) -> bool,
    probe: Probe<'_>,
    mut rand: impl FnMut(usize) -> usize,
) -> Option<usize> {
    let k = (0..n).filter(|&i| eligible(i)).count();
    let nth = |rank: usize| (0..n).filter(|&i| eligible(i)).nth(rank);
    match k {
        0 => None,
        1 => nth(0),
        _ => {
            let a = rand(k);
            // A second draw among the others: distinct from the first.
            let b = (a + 1 + rand(k - 1)) % k;
            let (a, b) = (nth(a)?, nth(b)?);
            let score = |i: usize| {
                let (cost, active, weight) = probe(i);
                ewma::score(cost, active, weight)
            };
            Some(if score(b) < score(a) { b } else { a })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lower_score_of_the_two_wins() {
        // Backend 2 is ten times slower than 0 and 1.
        let probe = |i: usize| (if i == 2 { 10.0 } else { 1.0 }, 0, 1.0);
        let mut counts = [0; 3];
        let mut state = 7u64;
        for _ in 0..3000 {
            let rand = |k: usize| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) as usize % k
            };
            counts[pick(3, |_| true, &probe, rand).unwrap()] += 1;
        }
        // The slow one wins no draw it takes part in.
        assert_eq!(counts[2], 0, "{counts:?}");
        assert!(counts[0] > 1200 && counts[1] > 1200, "{counts:?}");
    }

    #[test]
    fn in_flight_requests_count_against_a_fast_backend() {
        let probe = |i: usize| (1.0, if i == 0 { 9 } else { 0 }, 1.0);
        // Drawn together, the fast but busy one (cost 1 × 10) loses to 1 (1 × 1).
        assert_eq!(pick(2, |_| true, &probe, |_| 0), Some(1));
    }

    #[test]
    fn only_eligible_backends_are_drawn() {
        let probe = |_| (1.0, 0, 1.0);
        assert_eq!(pick(3, |i| i == 1, &probe, |_| 0), Some(1));
        assert_eq!(pick(3, |_| false, &probe, |_| 0), None);
        for draw in 0..2 {
            let got = pick(3, |i| i != 1, &probe, |k| draw % k).unwrap();
            assert_ne!(got, 1);
        }
    }
}
