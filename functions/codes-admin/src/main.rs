//! The codes-admin Lambda: configuration and clients once, then one `App::handle` per request.

use codes_admin::App;
use lambda_http::{service_fn, Request};
use loyalty_platform::config::Env;

#[tokio::main]
async fn main() -> Result<(), lambda_http::Error> {
    loyalty_platform::telemetry::init();
    let env = Env::from_process();
    let aws = loyalty_platform::aws::load_sdk_config().await;
    let app = App::new(&aws, &env)?;
    let app = &app;
    lambda_http::run(service_fn(move |req: Request| app.handle(req))).await
}
