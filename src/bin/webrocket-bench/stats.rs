//! A log-linear latency histogram: fixed memory, ~3% resolution.

/// Nanosecond latencies in buckets of 32 per power of two.
pub struct Histogram {
    buckets: Vec<u64>,
    count: u64,
}

const SUB: u32 = 5;

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: vec![0; 64 << SUB],
            count: 0,
        }
    }
}

fn bucket(v: u64) -> usize {
    let v = v.max(1);
    let exp = 63 - v.leading_zeros();
    if exp < SUB {
        return v as usize;
    }
    let mantissa = (v >> (exp - SUB)) & ((1 << SUB) - 1);
    (((exp - SUB + 1) << SUB) as u64 + mantissa) as usize
}

fn lower_bound(b: usize) -> u64 {
    let (high, mantissa) = ((b >> SUB) as u32, (b & ((1 << SUB) - 1)) as u64);
    if high == 0 {
        return mantissa;
    }
    let exp = high + SUB - 1;
    (1u64 << exp) | (mantissa << (exp - SUB))
}

impl Histogram {
    /// Records one value.
    pub fn record(&mut self, nanos: u64) {
        self.buckets[bucket(nanos)] += 1;
        self.count += 1;
    }

    /// Adds another histogram's values.
    pub fn merge(&mut self, other: &Histogram) {
        for (a, b) in self.buckets.iter_mut().zip(&other.buckets) {
            *a += b;
        }
        self.count += other.count;
    }

    /// Number of values.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The value at quantile `q` (0..=1), in nanoseconds.
    pub fn quantile(&self, q: f64) -> u64 {
        let target = ((self.count as f64) * q).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= target {
                return lower_bound(b);
            }
        }
        0
    }
}

impl Histogram {
    /// The non-empty buckets as `bucket:count` pairs, comma-separated
    /// (a few KiB: fits one datagram).
    pub fn encode(&self) -> String {
        let pairs = self.buckets.iter().enumerate().filter(|(_, &n)| n > 0);
        let pairs: Vec<String> = pairs.map(|(b, n)| format!("{b}:{n}")).collect();
        pairs.join(",")
    }

    /// Adds the values of an [`Histogram::encode`]d histogram; malformed
    /// pairs are skipped.
    pub fn merge_encoded(&mut self, text: &str) {
        for pair in text.split(',') {
            let Some((b, n)) = pair.split_once(':') else {
                continue;
            };
            let (Ok(b), Ok(n)) = (b.parse::<usize>(), n.parse::<u64>()) else {
                continue;
            };
            if let Some(slot) = self.buckets.get_mut(b) {
                *slot += n;
                self.count += n;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn an_encoded_histogram_merges_to_the_same_quantiles() {
        let mut one = Histogram::default();
        for v in [5u64, 700, 90_000, 90_500, 12_000_000] {
            one.record(v);
        }
        let mut other = Histogram::default();
        other.merge_encoded(&one.encode());
        other.merge_encoded("junk,3:x,999999:1");
        assert_eq!(other.count(), one.count());
        for q in [0.0, 0.5, 0.99, 1.0] {
            assert_eq!(other.quantile(q), one.quantile(q));
        }
    }
}
