//! The overview's chart of callbacks per provider: an SVG drawn on the server (maud), with presentation
//! attributes only (no `style`, no script: the console's Content-Security-Policy allows neither inline).
//! Each provider's line carries its total (`data-total`) and a `<title>` a person or a test can read.

use std::collections::BTreeMap;

use maud::{html, Markup};

use crate::callback_minutes::Minute;

/// Each provider's colour, in the order the providers are given.
const COLOURS: &[&str] = &["#1e7a34", "#b07d00", "#b3261e"];

const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 230.0;
const LEFT: f64 = 44.0;
const RIGHT: f64 = 12.0;
const TOP: f64 = 12.0;
const BOTTOM: f64 = 56.0;

/// One chart's cut of the counts: `buckets` buckets of `minutes_per_bucket` minutes, the last ending with
/// `now` (included).
pub(super) struct Span<'a> {
    pub(super) id: &'a str,
    pub(super) title: &'a str,
    /// What one point counts, for the axis ("per minute", "per 10 minutes").
    pub(super) unit: &'a str,
    pub(super) buckets: i64,
    pub(super) minutes_per_bucket: i64,
    /// Labels under the x axis at its start, middle and end.
    pub(super) x_labels: [&'a str; 3],
}

/// Each provider's count per bucket of `span`, from per-minute counts.
fn series(
    providers: &[(&'static str, &'static str)],
    counts: &BTreeMap<String, BTreeMap<Minute, u64>>,
    now: Minute,
    span: &Span,
) -> Vec<(&'static str, &'static str, Vec<u64>)> {
    let first = now - span.buckets * span.minutes_per_bucket + 1;
    providers
        .iter()
        .map(|(name, label)| {
            let mut buckets = vec![0u64; span.buckets.max(1) as usize];
            if let Some(minutes) = counts.get(*name) {
                for (minute, count) in minutes.range(first..=now) {
                    let index = ((minute - first) / span.minutes_per_bucket.max(1)) as usize;
                    if let Some(bucket) = buckets.get_mut(index) {
                        *bucket += count;
                    }
                }
            }
            (*name, *label, buckets)
        })
        .collect()
}

fn number(value: f64) -> String {
    format!("{value:.1}")
}

/// The chart of `span` for `providers` (stored name, label), from per-minute `counts` up to `now`.
pub(super) fn chart(
    providers: &[(&'static str, &'static str)],
    counts: &BTreeMap<String, BTreeMap<Minute, u64>>,
    now: Minute,
    span: &Span,
) -> Markup {
    let lines = series(providers, counts, now, span);
    let highest = lines
        .iter()
        .flat_map(|(_, _, buckets)| buckets.iter().copied())
        .max()
        .unwrap_or(0)
        .max(1);
    let plot_width = WIDTH - LEFT - RIGHT;
    let plot_height = HEIGHT - TOP - BOTTOM;
    let base = TOP + plot_height;
    let step = plot_width / (span.buckets.max(2) - 1) as f64;
    let x = |index: usize| LEFT + index as f64 * step;
    let y = |value: u64| base - value as f64 / highest as f64 * plot_height;
    let summary: Vec<String> = lines
        .iter()
        .map(|(_, label, buckets)| format!("{label} {}", buckets.iter().sum::<u64>()))
        .collect();
    let mut ticks = vec![0, highest / 2, highest];
    ticks.dedup();
    let title_id = format!("{}-title", span.id);
    html! {
        figure.chart {
            svg id=(span.id) viewBox=(format!("0 0 {WIDTH} {HEIGHT}")) role="img"
                aria-labelledby=(title_id) xmlns="http://www.w3.org/2000/svg"
                font-family="system-ui, sans-serif" font-size="11" {
                title id=(title_id) { (span.title) ", " (span.unit) ": " (summary.join(", ")) }
                // Axes, and the y axis's scale: 0, half and the highest count.
                line x1=(LEFT) y1=(TOP) x2=(LEFT) y2=(base) stroke="#5b6577" stroke-width="1" {}
                line x1=(LEFT) y1=(base) x2=(WIDTH - RIGHT) y2=(base) stroke="#5b6577" stroke-width="1" {}
                @for value in &ticks {
                    line x1=(LEFT) y1=(number(y(*value))) x2=(WIDTH - RIGHT) y2=(number(y(*value))) stroke="#d9dee7" stroke-width="1" {}
                    text x=(LEFT - 6.0) y=(number(y(*value) + 4.0)) text-anchor="end" fill="#5b6577" { (value) }
                }
                text x=(LEFT) y=(base + 16.0) text-anchor="start" fill="#5b6577" { (span.x_labels[0]) }
                text x=(LEFT + plot_width / 2.0) y=(base + 16.0) text-anchor="middle" fill="#5b6577" { (span.x_labels[1]) }
                text x=(WIDTH - RIGHT) y=(base + 16.0) text-anchor="end" fill="#5b6577" { (span.x_labels[2]) }
                @for (index, (name, label, buckets)) in lines.iter().enumerate() {
                    @let total: u64 = buckets.iter().sum();
                    @let colour = COLOURS.get(index).copied().unwrap_or("#1d2330");
                    @let points: Vec<String> = buckets.iter().enumerate().map(|(i, value)| format!("{},{}", number(x(i)), number(y(*value)))).collect();
                    g.series data-provider=(name) data-total=(total) {
                        title { (label) ": " (total) " callbacks" }
                        polyline points=(points.join(" ")) fill="none" stroke=(colour) stroke-width="2" stroke-linejoin="round" {}
                    }
                    // The legend, under the axis.
                    @let legend_x = LEFT + index as f64 * 190.0;
                    rect x=(number(legend_x)) y=(HEIGHT - 20.0) width="12" height="12" fill=(colour) {}
                    text x=(number(legend_x + 17.0)) y=(HEIGHT - 10.0) fill="#1d2330" { (label) " (" (total) ")" }
                }
            }
            figcaption.muted { (span.title) " — callbacks " (span.unit) " per provider (acknowledged, repeats included)." }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_sum_the_minutes_of_their_span_only() {
        let now = 1_000_000;
        let mut counts = BTreeMap::new();
        counts.insert(
            "mpesa".to_owned(),
            BTreeMap::from([(now, 2), (now - 9, 1), (now - 10, 5), (now - 1440, 7)]),
        );
        let span = Span {
            id: "day",
            title: "Last day",
            unit: "per 10 minutes",
            buckets: 144,
            minutes_per_bucket: 10,
            x_labels: ["", "", ""],
        };
        let providers = [("mpesa", "M-Pesa"), ("airtel_money", "Airtel Money")];
        let lines = series(&providers, &counts, now, &span);
        let mpesa = &lines[0].2;
        assert_eq!(mpesa.len(), 144);
        assert_eq!(mpesa[143], 3);
        assert_eq!(mpesa[142], 5);
        assert_eq!(
            mpesa.iter().sum::<u64>(),
            8,
            "the minute a day ago is outside"
        );
        assert_eq!(lines[1].2.iter().sum::<u64>(), 0);
        let drawn = chart(&providers, &counts, now, &span).into_string();
        assert!(
            drawn.contains(r#"data-provider="mpesa" data-total="8""#),
            "{drawn}"
        );
        assert!(!drawn.contains("style="));
    }
}
