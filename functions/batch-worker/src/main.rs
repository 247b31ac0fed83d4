//! The batch-worker Lambda: configuration and clients once, then one `App::handle` per SQS batch.

use aws_lambda_events::event::sqs::SqsEvent;
use batch_worker::App;
use lambda_runtime::{service_fn, LambdaEvent};
use loyalty_platform::config::Env;

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    loyalty_platform::telemetry::init();
    let env = Env::from_process();
    let aws = loyalty_platform::aws::load_sdk_config().await;
    let app = App::new(&aws, &env)?;
    let app = &app;
    lambda_runtime::run(service_fn(move |event: LambdaEvent<SqsEvent>| {
        app.handle(event)
    }))
    .await
}
