use lambda_http::{run, service_fn, Error, Request};
use loyalty_platform::{aws, config::Env, telemetry};
use partner_webhooks::App;

#[tokio::main]
async fn main() -> Result<(), Error> {
    telemetry::init();
    let env = Env::from_process();
    let sdk = aws::load_sdk_config().await;
    let app = App::new(&sdk, &env)?;
    let app = &app;
    run(service_fn(move |req: Request| app.handle(req))).await
}
