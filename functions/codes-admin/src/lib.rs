//! Admin routes for code batches and the fraud review queue (CodesAdminFunction).
//!
//! Every route is for admins only. It establishes the caller first (401), then the role
//! (403), then reads the request (400), so that no one learns anything about a route they
//! may not use.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use loyalty_domain::auth::{Caller, Role};
use loyalty_domain::batch::{BatchRecords, ExportLinks, JobQueue};
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, Problem, ResultExt};
use loyalty_platform::metrics::{Metrics, Routes};
use loyalty_platform::stores::batch_jobs::SqsJobQueue;
use loyalty_platform::stores::codes::CodesStore;
use loyalty_platform::stores::exports::S3Exports;

mod batches;
mod reviews;

pub use batches::BatchSettings;
pub use reviews::{Desk, DynamoDesk};

/// The function: the review desk `D`, the batch records `B`, the job queue `Q`, the export
/// link signer `X` and the clock. Lambda runs it over DynamoDB, SQS, S3 and the wall clock
/// ([`App::new`]); handler tests give it `MemoryReviews`, `MemoryBatches`, `MemoryJobs`,
/// `MemoryExports` and a `FixedClock` ([`App::with_ports`]). Batch seeds are secret random
/// bytes, drawn here, never from a test's id source.
pub struct App<D = DynamoDesk, B = CodesStore, Q = SqsJobQueue, X = S3Exports> {
    batches: batches::Batches<B, Q, X>,
    reviews: reviews::Reviews<D>,
    metrics: Metrics,
}

/// The routes (the `Route` dimension of their metrics).
pub const ROUTES: Routes = Routes(&[
    ("POST /admin/batches", None),
    ("GET /admin/batches/{batchId}", None),
    ("GET /admin/reviews", None),
    ("POST /admin/reviews/{reviewId}/decision", None),
]);

/// The batch routes' ports.
pub struct BatchPorts<B, Q, X> {
    pub records: B,
    pub jobs: Q,
    pub links: X,
    pub settings: BatchSettings,
}

impl<D: Desk, B: BatchRecords, Q: JobQueue, X: ExportLinks> App<D, B, Q, X> {
    /// Any desk, batch ports and clock: the memory adapters and a fixed clock in tests.
    pub fn with_ports(desk: D, batches: BatchPorts<B, Q, X>, clock: Arc<dyn Clock>) -> Self {
        Self {
            batches: batches::Batches::with_ports(
                batches.records,
                batches.jobs,
                batches.links,
                batches.settings,
                clock.clone(),
            ),
            reviews: reviews::Reviews::with_desk(desk, clock),
            metrics: Metrics::discard(),
        }
    }

    /// Where the metrics go (none unless given; [`App::new`] gives EMF on stdout).
    pub fn with_metrics(mut self, metrics: Metrics) -> Self {
        self.metrics = metrics;
        self
    }

    pub fn desk(&self) -> &D {
        self.reviews.desk()
    }

    /// The batch records, for tests to inspect what an order wrote.
    pub fn records(&self) -> &B {
        self.batches.records()
    }

    pub fn jobs(&self) -> &Q {
        self.batches.jobs()
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, lambda_http::Error> {
        Ok(self.metrics.http(&req, &ROUTES, self.route(&req)).await)
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "POST /admin/batches" => self.batches.create(req).await,
            "GET /admin/batches/{batchId}" => self.batches.get(req).await,
            "GET /admin/reviews" => self.reviews.list(req).await,
            "POST /admin/reviews/{reviewId}/decision" => self.reviews.decide(req).await,
            _ => Err(Problem::route_not_found()),
        }
    }
}

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Ok(Self::with_clock(aws, env, Arc::new(SystemClock))?
            .with_metrics(Metrics::emf("codes-admin")))
    }

    /// Tests pass their own clock: batch validity and review decisions are dated by it.
    pub fn with_clock(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        let (records, jobs, links) = batches::dynamo_ports(aws, env)?;
        let ports = BatchPorts {
            records,
            jobs,
            links,
            settings: BatchSettings::from_env(env)?,
        };
        Ok(Self::with_ports(DynamoDesk::new(aws, env)?, ports, clock))
    }
}

pub(crate) fn admin(req: &Request) -> Result<Caller, Problem> {
    let caller = http::caller(req)?;
    caller.require(&[Role::Admin]).problem()?;
    Ok(caller)
}
