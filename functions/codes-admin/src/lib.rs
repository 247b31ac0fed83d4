//! Admin routes for code batches and the fraud review queue (CodesAdminFunction).
//!
//! Every route is for admins only. It establishes the caller first (401), then the role
//! (403), then reads the request (400), so that no one learns anything about a route they
//! may not use.

use std::sync::Arc;

use lambda_http::{Body, Request, Response};
use loyalty_domain::auth::{Caller, Role};
use loyalty_domain::ports::{Clock, SystemClock};
use loyalty_platform::config::{ConfigError, Env};
use loyalty_platform::http::{self, respond, Problem, ResultExt};

mod batches;
mod reviews;

pub use reviews::{Desk, DynamoDesk};

/// `batches` is DynamoDB only: an app built [`App::with_desk`] answers its routes 500.
pub struct App<D = DynamoDesk> {
    batches: Option<batches::Batches>,
    reviews: reviews::Reviews<D>,
}

impl<D: Desk> App<D> {
    /// The review routes over any desk (`MemoryReviews` in tests) and clock.
    pub fn with_desk(desk: D, clock: Arc<dyn Clock>) -> Self {
        Self {
            batches: None,
            reviews: reviews::Reviews::with_desk(desk, clock),
        }
    }

    pub fn desk(&self) -> &D {
        self.reviews.desk()
    }

    pub async fn handle(&self, req: Request) -> Result<Response<Body>, lambda_http::Error> {
        Ok(respond(self.route(&req).await))
    }

    fn batches(&self) -> Result<&batches::Batches, Problem> {
        self.batches.as_ref().ok_or_else(|| {
            Problem::from_error(loyalty_domain::InfraError::permanent(
                "codes-admin",
                "this app has no batch store",
            ))
        })
    }

    async fn route(&self, req: &Request) -> Result<Response<Body>, Problem> {
        match http::route_key(req) {
            "POST /admin/batches" => self.batches()?.create(req).await,
            "GET /admin/batches/{batchId}" => self.batches()?.get(req).await,
            "GET /admin/reviews" => self.reviews.list(req).await,
            "POST /admin/reviews/{reviewId}/decision" => self.reviews.decide(req).await,
            _ => Err(Problem::route_not_found()),
        }
    }
}

impl App {
    pub fn new(aws: &aws_config::SdkConfig, env: &Env) -> Result<Self, ConfigError> {
        Self::with_clock(aws, env, Arc::new(SystemClock))
    }

    /// Tests pass their own clock: batch validity and review decisions are dated by it.
    pub fn with_clock(
        aws: &aws_config::SdkConfig,
        env: &Env,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConfigError> {
        Ok(Self {
            batches: Some(batches::Batches::new(aws, env, clock.clone())?),
            reviews: reviews::Reviews::new(aws, env, clock)?,
        })
    }
}

pub(crate) fn admin(req: &Request) -> Result<Caller, Problem> {
    let caller = http::caller(req)?;
    caller.require(&[Role::Admin]).problem()?;
    Ok(caller)
}
