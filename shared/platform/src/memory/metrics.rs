//! The metrics port in memory: what a handler test asserts a behaviour emitted.

use std::sync::{Arc, Mutex};

use crate::metrics::{Dim, MetricSink, Metrics, Point};

/// Every point emitted, in order; clones share them, so a test keeps one and gives the
/// app [`RecordedMetrics::metrics`].
#[derive(Clone, Default)]
pub struct RecordedMetrics(Arc<Mutex<Vec<Vec<Point>>>>);

impl RecordedMetrics {
    pub fn metrics(&self) -> Metrics {
        Metrics::new(self.clone())
    }

    /// Each emit, as it came: a request's points arrive together.
    pub fn emits(&self) -> Vec<Vec<Point>> {
        self.0.lock().expect("metrics").clone()
    }

    pub fn points(&self) -> Vec<Point> {
        self.emits().into_iter().flatten().collect()
    }

    /// The sum of `name` over the points with exactly these dimensions.
    pub fn sum(&self, name: &str, dimensions: &[(Dim, &str)]) -> u64 {
        self.points()
            .iter()
            .filter(|p| {
                p.metric.name == name
                    && p.dimensions.len() == dimensions.len()
                    && p.dimensions.iter().zip(dimensions).all(|(a, b)| a == b)
            })
            .map(|p| p.value)
            .sum()
    }

    /// The names of the metrics emitted, each once, in order of first emission.
    pub fn names(&self) -> Vec<&'static str> {
        let mut names = Vec::new();
        for p in self.points() {
            if !names.contains(&p.metric.name) {
                names.push(p.metric.name);
            }
        }
        names
    }

    pub fn clear(&self) {
        self.0.lock().expect("metrics").clear();
    }
}

impl MetricSink for RecordedMetrics {
    /// Refuses a point whose dimensions are not its metric's, so a handler test fails
    /// where the dashboard would show nothing.
    fn emit(&self, points: &[Point]) {
        for p in points {
            assert!(p.is_well_formed(), "{p:?} has the wrong dimensions");
        }
        self.0.lock().expect("metrics").push(points.to_vec());
    }
}
