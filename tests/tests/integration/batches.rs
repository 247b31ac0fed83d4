//! Batch issuance end to end against moto: the admin route orders a batch, its SQS jobs are
//! fed to the worker, and the codes, exports and batch status are checked in the emulator.

use std::collections::HashSet;

use aws_lambda_events::event::sqs::SqsEvent;
use aws_sdk_dynamodb::types::{AttributeValue, Select};
use lambda_runtime::{Context, LambdaEvent};
use loyalty_domain::code::Code;
use loyalty_platform::config::Env;
use loyalty_platform::dynamo::ItemExt;
use loyalty_platform::stores::codes::read_code;
use loyalty_tests::{body_json, ApiEvent, TestStack};
use serde_json::{json, Value};

const ADMIN: &str = "CodesAdminFunction";
const WORKER: &str = "BatchWorkerFunction";

struct Rig {
    stack: TestStack,
    admin: codes_admin::App,
    worker: batch_worker::App,
}

impl Rig {
    /// Both functions over one fresh stack; chunks of 1,000 so a small batch has several.
    async fn new() -> Rig {
        Rig::with_chunks_of(1_000).await
    }

    async fn with_chunks_of(codes_per_chunk: u32) -> Rig {
        let stack = TestStack::for_functions(&[ADMIN, WORKER]).await;
        let admin_env: Env = stack
            .env_for(ADMIN)
            .with("CODES_PER_CHUNK", codes_per_chunk.to_string());
        let admin = codes_admin::App::new(&stack.aws, &admin_env).unwrap();
        let worker = batch_worker::App::new(&stack.aws, &stack.env_for(WORKER)).unwrap();
        Rig {
            stack,
            admin,
            worker,
        }
    }

    async fn call(&self, event: ApiEvent) -> (u16, Value) {
        let response = self.admin.handle(event.request()).await.unwrap();
        (response.status().as_u16(), body_json(&response))
    }

    /// Every job waiting in the queue, as the SQS messages Lambda would deliver.
    async fn drain_jobs(&self) -> Vec<Value> {
        let sqs = self.stack.sqs();
        let mut jobs = Vec::new();
        loop {
            let out = sqs
                .receive_message()
                .queue_url(self.stack.queue_url("BatchJobsQueue"))
                .max_number_of_messages(10)
                .wait_time_seconds(1)
                .send()
                .await
                .unwrap();
            let messages = out.messages.unwrap_or_default();
            if messages.is_empty() {
                return jobs;
            }
            for m in messages {
                jobs.push(json!({
                    "messageId": m.message_id.unwrap(),
                    "receiptHandle": m.receipt_handle.unwrap(),
                    "body": m.body.unwrap(),
                    "eventSource": "aws:sqs",
                }));
            }
        }
    }

    /// Delivers one message to the worker; returns the ids it handed back for retry.
    async fn deliver(&self, message: &Value) -> Vec<String> {
        let event: SqsEvent = serde_json::from_value(json!({ "Records": [message] })).unwrap();
        let response = self
            .worker
            .handle(LambdaEvent::new(event, Context::default()))
            .await
            .unwrap();
        response
            .batch_item_failures
            .into_iter()
            .map(|f| f.item_identifier)
            .collect()
    }

    async fn object(&self, key: &str) -> String {
        let out = self
            .stack
            .s3()
            .get_object()
            .bucket(self.stack.bucket("ExportsBucket"))
            .key(key)
            .send()
            .await
            .unwrap();
        String::from_utf8(out.body.collect().await.unwrap().to_vec()).unwrap()
    }

    async fn keys_under(&self, prefix: &str) -> Vec<String> {
        let mut keys = Vec::new();
        let mut pages = self
            .stack
            .s3()
            .list_objects_v2()
            .bucket(self.stack.bucket("ExportsBucket"))
            .prefix(prefix)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            keys.extend(
                page.unwrap()
                    .contents
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|o| o.key),
            );
        }
        keys
    }

    async fn code_items(&self) -> i32 {
        let mut total = 0;
        let mut start = None;
        loop {
            let out = self
                .stack
                .dynamodb()
                .scan()
                .table_name(self.stack.table_name("CodesTable"))
                .filter_expression("begins_with(pk, :code)")
                .expression_attribute_values(":code", AttributeValue::S("CODE#".into()))
                .select(Select::Count)
                .set_exclusive_start_key(start)
                .send()
                .await
                .unwrap();
            total += out.count;
            start = out.last_evaluated_key;
            if start.is_none() {
                return total;
            }
        }
    }
}

fn order(count: u32) -> ApiEvent {
    let event = ApiEvent::load("codes-admin/create-batch.json");
    let mut body: Value = serde_json::from_str(event.0["body"].as_str().unwrap()).unwrap();
    body["count"] = count.into();
    event.body(body)
}

#[tokio::test]
async fn an_ordered_batch_is_stored_exported_and_ready_once_every_chunk_is_done() {
    let rig = Rig::new().await;
    let (status, accepted) = rig.call(order(2_500)).await;
    assert_eq!(status, 202, "{accepted}");
    assert_eq!(accepted["chunks"], 3);
    let batch = accepted["batch"].as_u64().unwrap() as u32;

    let jobs = rig.drain_jobs().await;
    assert_eq!(jobs.len(), 3);
    for (i, job) in jobs.iter().enumerate() {
        assert!(rig.deliver(job).await.is_empty());
        let (_, view) = rig
            .call(
                ApiEvent::load("codes-admin/get-batch.json")
                    .path_param("batchId", &batch.to_string()),
            )
            .await;
        assert_eq!(view["chunks_done"], i as u64 + 1);
        let expected = if i == 2 { "ready" } else { "generating" };
        assert_eq!(view["status"], expected, "after {} chunks", i + 1);
    }

    let (_, view) = rig
        .call(
            ApiEvent::load("codes-admin/get-batch.json").path_param("batchId", &batch.to_string()),
        )
        .await;
    let exports = view["exports"].as_array().unwrap();
    let mut codes = HashSet::new();
    for (chunk, export) in exports.iter().enumerate() {
        let csv = rig.object(export["csv_key"].as_str().unwrap()).await;
        let mut lines = csv.lines();
        assert_eq!(
            lines.next(),
            Some("code,qr_payload,sku,product_type,points,valid_until")
        );
        let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
        assert_eq!(rows.len(), if chunk == 2 { 500 } else { 1_000 });
        for row in &rows {
            let code = Code::parse(row[0]).unwrap();
            assert_eq!(
                Code::parse(row[1]),
                Ok(code),
                "the QR payload names the printed code"
            );
            assert_eq!(code.batch_number(), batch);
            assert_eq!(&row[2..], ["COLA-05", "Cola 0.5 l PET", "10", "2030-12-31"]);
            codes.insert(code);
        }
        let prefix = export["qr_prefix"].as_str().unwrap();
        let sheets = rig.keys_under(prefix).await;
        assert_eq!(sheets.len(), rows.len().div_ceil(100), "QR sheets of 100");
        let last = rig
            .object(&format!("{prefix}sheet-{:03}.svg", sheets.len() - 1))
            .await;
        assert!(last.starts_with("<svg") && last.ends_with("</svg>"));
        let last_row = Code::parse(rows[rows.len() - 1][0]).unwrap();
        assert!(
            last.contains(&last_row.display()),
            "the last code is on the last sheet"
        );
    }
    assert_eq!(codes.len(), 2_500, "codes are distinct");
    assert_eq!(
        rig.code_items().await,
        2_500,
        "exactly the exported codes are stored"
    );

    let table = rig.stack.table_name("CodesTable");
    for code in codes.iter().take(25) {
        let item = read_code(&rig.stack.dynamodb(), table, code)
            .await
            .unwrap()
            .expect("the code is stored");
        assert_eq!(item.string("status").unwrap(), "issued");
        assert_eq!(item.number("batch_id").unwrap(), batch as u64);
        assert_eq!(item.number("points").unwrap(), 10);
        assert_eq!(item.string("valid_until").unwrap(), "2030-12-31");
        assert_eq!(item.string("region").unwrap(), "north");
        assert_eq!(item.string("sku").unwrap(), "COLA-05");
        assert_eq!(item.string("product_type").unwrap(), "Cola 0.5 l PET");
    }
}

#[tokio::test]
async fn a_redelivered_chunk_leaves_claimed_codes_claimed() {
    let rig = Rig::new().await;
    let (status, accepted) = rig.call(order(300)).await;
    assert_eq!(status, 202, "{accepted}");
    let jobs = rig.drain_jobs().await;
    for job in &jobs {
        assert!(rig.deliver(job).await.is_empty());
    }
    let first_csv = rig
        .object(&format!("batches/{}/chunk-0.csv", accepted["batch"]))
        .await;
    let claimed =
        Code::parse(first_csv.lines().nth(1).unwrap().split(',').next().unwrap()).unwrap();
    let table = rig.stack.table_name("CodesTable");
    rig.stack
        .dynamodb()
        .update_item()
        .table_name(table)
        .key(
            "pk",
            AttributeValue::S(format!("CODE#{}", claimed.canonical())),
        )
        .key("sk", AttributeValue::S("CODE".into()))
        .update_expression("SET #st = :claimed")
        .expression_attribute_names("#st", "status")
        .expression_attribute_values(":claimed", AttributeValue::S("claimed".into()))
        .send()
        .await
        .unwrap();

    // SQS delivers at least once: the same job again, after the chunk is done.
    let chunk_zero = jobs
        .iter()
        .find(|j| j["body"].as_str().unwrap().contains("\"chunk\":0"))
        .unwrap();
    assert!(rig.deliver(chunk_zero).await.is_empty());

    let item = read_code(&rig.stack.dynamodb(), table, &claimed)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(item.string("status").unwrap(), "claimed");
    assert_eq!(rig.code_items().await, 300);
}

#[tokio::test]
async fn only_admins_may_order_and_bad_orders_are_refused_before_anything_is_written() {
    let rig = Rig::new().await;
    let as_participant = order(10).role("participant").sub("p-1");
    assert_eq!(rig.call(as_participant).await.0, 403);
    let (status, body) = rig.call(order(10).without_claims()).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("unauthenticated"))
    );

    let cases = [
        (json!({"count": 0}), "invalid_count"),
        (json!({"count": 1_000_001}), "invalid_count"),
        (json!({"pack_size": "a bottle"}), "invalid_pack_size"),
        (json!({"points_per_pack": 0}), "invalid_points_per_pack"),
        (json!({"valid_until": "2001-01-01"}), "valid_until_in_past"),
        (json!({"valid_until": "next year"}), "invalid_valid_until"),
        (json!({"sku": "COLA 05"}), "invalid_sku"),
        (json!({"region": ""}), "invalid_region"),
    ];
    let base: Value = serde_json::from_str(order(10).0["body"].as_str().unwrap()).unwrap();
    for (change, code) in cases {
        let mut body = base.clone();
        for (k, v) in change.as_object().unwrap() {
            body[k] = v.clone();
        }
        let (status, problem) = rig
            .call(ApiEvent::load("codes-admin/create-batch.json").body(body))
            .await;
        assert_eq!(
            (status, problem["code"].as_str()),
            (400, Some(code)),
            "{change}"
        );
    }
    let (status, problem) = rig
        .call(ApiEvent::load("codes-admin/create-batch.json").text_body("{\"sku\":"))
        .await;
    assert_eq!(
        (status, problem["code"].as_str()),
        (400, Some("malformed_json"))
    );

    assert!(rig.drain_jobs().await.is_empty(), "no job was enqueued");
    let scanned = rig
        .stack
        .dynamodb()
        .scan()
        .table_name(rig.stack.table_name("CodesTable"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        scanned.count, 0,
        "nothing was written, not even a batch number"
    );
}

#[tokio::test]
async fn jobs_for_unknown_batches_or_chunks_are_dropped_not_retried() {
    let rig = Rig::new().await;
    let (_, accepted) = rig.call(order(10)).await;
    let batch = accepted["batch"].as_u64().unwrap();
    for body in [
        json!({"batch": batch + 100, "chunk": 0}),
        json!({"batch": batch, "chunk": 1}),
    ] {
        let message =
            json!({"messageId": "m-1", "body": body.to_string(), "eventSource": "aws:sqs"});
        assert!(rig.deliver(&message).await.is_empty(), "{body}");
    }
    assert_eq!(rig.code_items().await, 0);
    let (_, missing) = rig
        .call(ApiEvent::load("codes-admin/get-batch.json").path_param("batchId", "4000"))
        .await;
    assert_eq!(missing["code"], "batch_not_found");
}

#[tokio::test]
async fn chunks_finishing_together_still_leave_the_batch_ready() {
    let rig = Rig::with_chunks_of(5).await;
    let (_, accepted) = rig.call(order(40)).await;
    let jobs = rig.drain_jobs().await;
    assert_eq!(jobs.len(), 8);
    let failures = futures::future::join_all(jobs.iter().map(|job| rig.deliver(job))).await;
    assert!(failures.iter().all(Vec::is_empty));
    let batch = accepted["batch"].to_string();
    let (_, view) = rig
        .call(ApiEvent::load("codes-admin/get-batch.json").path_param("batchId", &batch))
        .await;
    assert_eq!(
        (view["status"].as_str(), view["chunks_done"].as_u64()),
        (Some("ready"), Some(8))
    );
    assert_eq!(rig.code_items().await, 40);
}

#[tokio::test]
async fn an_order_retried_with_its_key_is_answered_again_and_its_exports_download_from_their_links()
{
    let rig = Rig::new().await;
    let keyed = || order(10).header("idempotency-key", "order-2026-11-cola");
    let (status, first) = rig.call(keyed()).await;
    assert_eq!(status, 202, "{first}");
    let response = rig.admin.handle(keyed().request()).await.unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.headers()["idempotent-replayed"], "true");
    assert_eq!(body_json(&response), first);
    // The retry sends the (not yet done) chunk's job again: it is delivered twice.
    let jobs = rig.drain_jobs().await;
    assert_eq!(jobs.len(), 2);
    for job in &jobs {
        assert!(rig.deliver(job).await.is_empty());
    }
    assert_eq!(rig.code_items().await, 10, "one batch, its codes once");

    let (_, view) = rig
        .call(
            ApiEvent::load("codes-admin/get-batch.json")
                .path_param("batchId", &first["batch"].to_string()),
        )
        .await;
    assert_eq!(view["status"], "ready");
    let url = view["exports"][0]["csv_url"].as_str().unwrap();
    let expected = rig
        .object(view["exports"][0]["csv_key"].as_str().unwrap())
        .await;
    assert_eq!(download(url).await, expected);
}

/// A plain HTTP/1.1 GET without credentials, as a browser follows a link.
async fn download(url: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let rest = url
        .strip_prefix("http://")
        .expect("the emulator speaks HTTP");
    let (host, path) = rest.split_at(rest.find('/').unwrap());
    let mut stream = tokio::net::TcpStream::connect(host).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head.to_ascii_lowercase().contains("chunked"),
        "the emulator sends a length"
    );
    body.to_string()
}
