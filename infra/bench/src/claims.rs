//! Figures 1 and 2: DynamoDB round trips per claim, and claim latency against a bare
//! `TransactWriteItems` of the same shape, both on the emulator.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use aws_sdk_dynamodb::types::{
    AttributeValue, ConditionCheck, Put, ReturnValuesOnConditionCheckFailure, TransactWriteItem,
    Update,
};
use chrono::Utc;
use lambda_http::http::StatusCode;
use loyalty_domain::batch::{Batch, BatchStatus};
use loyalty_domain::code::Code;
use loyalty_domain::ids::{OutletId, ParticipantId};
use loyalty_domain::ledger::{entry_ids, programme_shard, Entry, EntryKind};
use loyalty_domain::ports::SystemClock;
use loyalty_local::provision::Resources;
use loyalty_platform::config::Env;
use loyalty_platform::stores::codes::CodesStore;
use loyalty_platform::stores::ledger::{balance_update, entry_item};

use crate::counter::{counted_dynamodb, Counter, Tally};
use crate::stack::{create_batch, register, BoxError, ClaimEvents};

/// Below the default velocity limit (60 an hour), so no claim is flagged or retried.
const CLAIMS_PER_PARTICIPANT: usize = 50;
const POINTS: u64 = 10;
pub const WARM_UP: usize = 10;

pub struct Rig {
    aws: aws_config::SdkConfig,
    env: Env,
    resources: Resources,
    events: ClaimEvents,
    batch: Batch,
    codes: Vec<Code>,
    next: usize,
}

impl Rig {
    /// A batch of `count` issued codes in fresh tables.
    pub async fn new(
        aws: &aws_config::SdkConfig,
        resources: Resources,
        count: u32,
    ) -> Result<Rig, BoxError> {
        let env = resources.env_for("CodeClaimFunction")?;
        let store = CodesStore::new(
            aws_sdk_dynamodb::Client::new(aws),
            env.required("CODES_TABLE")?,
        );
        let batch = create_batch(&store, count, POINTS, count, BatchStatus::Ready).await?;
        let codes = Code::chunk(&batch.seed.0, batch.number, 0, count);
        store.put_codes(&batch, &codes).await?;
        // Every participant a run claims as (at most one per CLAIMS_PER_PARTICIPANT codes), in
        // the region and at the outlet their tokens name.
        let people = (count as usize).div_ceil(CLAIMS_PER_PARTICIPANT) + 1;
        let names = ["warm", "seller", "other", "guesser", "typo"]
            .map(|n| format!("p-rt-{n}"))
            .into_iter()
            .chain((0..people).flat_map(|i| [format!("p-lat-{i}"), format!("p-bare-{i}")]));
        register(aws, &resources, names, "north", Some("o-bench")).await?;
        Ok(Rig {
            aws: aws.clone(),
            env,
            resources,
            events: ClaimEvents::load()?,
            batch,
            codes,
            next: 0,
        })
    }

    fn app(&self, counter: &Counter) -> Result<code_claim::App, BoxError> {
        Ok(code_claim::App::with_dynamodb(
            counted_dynamodb(&self.aws, counter),
            &self.env,
            Box::new(SystemClock),
        )?)
    }

    fn fresh_code(&mut self) -> Code {
        let code = self.codes[self.next];
        self.next += 1;
        code
    }

    fn table(&self, logical_id: &str) -> &str {
        self.resources.table_name(logical_id).expect("provisioned")
    }
}

async fn claim(
    app: &code_claim::App,
    events: &ClaimEvents,
    participant: &str,
    code: &str,
) -> Result<StatusCode, BoxError> {
    Ok(app
        .handle(events.request(participant, code))
        .await?
        .status())
}

/// Runs one claim and returns what it sent, refusing to count a claim that went wrong.
async fn counted(
    app: &code_claim::App,
    counter: &Counter,
    events: &ClaimEvents,
    participant: &str,
    code: &str,
    expect: StatusCode,
) -> Result<Tally, BoxError> {
    let before = counter.snapshot();
    let status = claim(app, events, participant, code).await?;
    if status != expect {
        return Err(format!("claim answered {status}, expected {expect}").into());
    }
    Ok(counter.snapshot().since(&before))
}

pub struct RoundTrip {
    pub scenario: &'static str,
    pub expected: &'static str,
    pub requests: Tally,
    /// Claims the figure is taken over (the per-claim mean when more than one).
    pub claims: u64,
}

pub async fn round_trips(rig: &mut Rig) -> Result<Vec<RoundTrip>, BoxError> {
    let counter = Counter::default();
    let app = rig.app(&counter)?;
    let mut rows = Vec::new();

    let code = rig.fresh_code().display();
    let requests = counted(
        &app,
        &counter,
        &rig.events,
        "p-rt-warm",
        &code,
        StatusCode::OK,
    )
    .await?;
    rows.push(RoundTrip {
        scenario: "first claim on a cold function (batch metadata and time zones not cached yet)",
        expected: "3",
        requests,
        claims: 1,
    });

    let code = rig.fresh_code().display();
    let requests = counted(
        &app,
        &counter,
        &rig.events,
        "p-rt-seller",
        &code,
        StatusCode::OK,
    )
    .await?;
    rows.push(RoundTrip {
        scenario: "first claim of a new participant (no balance yet), warm function",
        expected: "1",
        requests,
        claims: 1,
    });

    let steady = 40;
    let before = counter.snapshot();
    for _ in 0..steady {
        let code = rig.fresh_code().display();
        counted(
            &app,
            &counter,
            &rig.events,
            "p-rt-seller",
            &code,
            StatusCode::OK,
        )
        .await?;
    }
    rows.push(RoundTrip {
        scenario: "steady state: the same participant, code after code, warm function",
        expected: "1",
        requests: counter.snapshot().since(&before),
        claims: steady,
    });

    // A second warm function that has never seen p-rt-seller, whose balance has moved.
    let other_counter = Counter::default();
    let other = rig.app(&other_counter)?;
    let code = rig.fresh_code().display();
    counted(
        &other,
        &other_counter,
        &rig.events,
        "p-rt-other",
        &code,
        StatusCode::OK,
    )
    .await?;
    let code = rig.fresh_code().display();
    let requests = counted(
        &other,
        &other_counter,
        &rig.events,
        "p-rt-seller",
        &code,
        StatusCode::OK,
    )
    .await?;
    rows.push(RoundTrip {
        scenario: "first claim of a known participant on a function that has not seen them (balance version cache cold)",
        expected: "2",
        requests,
        claims: 1,
    });

    let replayed = rig.codes[1].display();
    let requests = counted(
        &app,
        &counter,
        &rig.events,
        "p-rt-seller",
        &replayed,
        StatusCode::OK,
    )
    .await?;
    rows.push(RoundTrip {
        scenario: "replay: the same participant claims a code they already claimed",
        expected: "-",
        requests,
        claims: 1,
    });

    // Valid check character, right batch, but never written: a guessed code.
    let unknown = Code::chunk(&rig.batch.seed.0, rig.batch.number, 7, 1)[0].display();
    let requests = counted(
        &app,
        &counter,
        &rig.events,
        "p-rt-guesser",
        &unknown,
        StatusCode::NOT_FOUND,
    )
    .await?;
    rows.push(RoundTrip {
        scenario: "failed attempt: unknown code of a known batch",
        expected: "-",
        requests,
        claims: 1,
    });

    let mistyped = {
        let mut chars: Vec<char> = rig.codes[2].canonical().chars().collect();
        chars.swap(3, 4);
        chars.into_iter().collect::<String>()
    };
    let requests = counted(
        &app,
        &counter,
        &rig.events,
        "p-rt-typo",
        &mistyped,
        StatusCode::BAD_REQUEST,
    )
    .await?;
    rows.push(RoundTrip {
        scenario: "mistyped code (check character fails)",
        expected: "0",
        requests,
        claims: 1,
    });
    Ok(rows)
}

pub struct Latency {
    pub handler: Vec<Duration>,
    pub bare: Vec<Duration>,
    /// Requests the handler sent during the timed claims.
    pub handler_requests: Tally,
    pub bare_requests: Tally,
}

/// Claims through the handler and bare transactions alternate, each on a fresh code of
/// the same batch, so both see the same emulator state and load.
pub async fn latency(rig: &mut Rig, samples: usize) -> Result<Latency, BoxError> {
    let counter = Counter::default();
    let app = rig.app(&counter)?;
    let bare_counter = Counter::default();
    let bare_client = counted_dynamodb(&rig.aws, &bare_counter);
    let mut bare = Bare::new();

    let mut result = Latency {
        handler: Vec::with_capacity(samples),
        bare: Vec::with_capacity(samples),
        handler_requests: Tally::default(),
        bare_requests: Tally::default(),
    };
    let mut handler_before = Tally::default();
    let mut bare_before = Tally::default();
    for i in 0..WARM_UP + samples {
        if i == WARM_UP {
            handler_before = counter.snapshot();
            bare_before = bare_counter.snapshot();
        }
        let participant = format!("p-lat-{}", i / CLAIMS_PER_PARTICIPANT);
        let code = rig.fresh_code().display();
        let request = rig.events.request(&participant, &code);
        let started = Instant::now();
        let response = app.handle(request).await?;
        let handler = started.elapsed();
        if response.status() != StatusCode::OK {
            return Err(format!("a timed claim answered {}", response.status()).into());
        }

        let items = bare.items(rig, i)?;
        let started = Instant::now();
        bare_client
            .transact_write_items()
            .set_transact_items(Some(items))
            .client_request_token(format!("bench-{}-{i}", bare.run))
            .send()
            .await
            .map_err(|e| format!("bare transaction: {:?}", e.into_service_error()))?;
        let bare_elapsed = started.elapsed();
        bare.committed(i);

        if i >= WARM_UP {
            result.handler.push(handler);
            result.bare.push(bare_elapsed);
        }
    }
    result.handler_requests = counter.snapshot().since(&handler_before);
    result.bare_requests = bare_counter.snapshot().since(&bare_before);
    Ok(result)
}

/// The claim transaction written by hand with the SDK: the same eleven items on the same
/// tables with the same conditions, for participants that claim as often as the handler's.
struct Bare {
    run: i64,
    versions: HashMap<String, u64>,
}

impl Bare {
    fn new() -> Bare {
        Bare {
            run: Utc::now().timestamp_millis(),
            versions: HashMap::new(),
        }
    }

    fn participant(i: usize) -> String {
        format!("p-bare-{}", i / CLAIMS_PER_PARTICIPANT)
    }

    fn committed(&mut self, i: usize) {
        *self.versions.entry(Self::participant(i)).or_default() += 1;
    }

    fn items(&self, rig: &mut Rig, i: usize) -> Result<Vec<TransactWriteItem>, BoxError> {
        let (codes, ledger, fraud, outbox) = (
            rig.table("CodesTable").to_string(),
            rig.table("LedgerTable").to_string(),
            rig.table("FraudTable").to_string(),
            rig.table("OutboxTable").to_string(),
        );
        let code = rig.fresh_code();
        let participant = Self::participant(i);
        let version = self.versions.get(&participant).copied().unwrap_or(0);
        let now = Utc::now();
        let ts = now.timestamp();
        let window = ts - ts % 3600;
        let s = |v: &str| AttributeValue::S(v.to_string());
        let n = |v: i64| AttributeValue::N(v.to_string());
        let key = |pk: String, sk: &str| {
            HashMap::from([("pk".to_string(), s(&pk)), ("sk".to_string(), s(sk))])
        };
        let entry = Entry {
            id: entry_ids::code_claim(code.canonical()),
            participant: ParticipantId::parse(&participant)?,
            outlet: Some(OutletId::parse("o-bench")?),
            kind: EntryKind::CodeClaim,
            amount: loyalty_domain::Points(POINTS),
            source: format!("batch {} · COLA-05 Cola 0.5 l", rig.batch.number),
            created_at: now,
            expires_on: Some((now + chrono::Duration::days(365)).date_naive()),
        };
        let receipt = serde_json::json!({
            "entry_id": entry.id.as_str(), "status": "accepted", "points": POINTS,
            "batch": rig.batch.number, "sku": "COLA-05", "product_type": "Cola 0.5 l",
            "balance": { "available": (version + 1) * POINTS, "pending": 0, "held": 0,
                "lifetime_earned": (version + 1) * POINTS, "spent": 0, "expired": 0, "version": version + 1 },
            "claimed_at": now.to_rfc3339(),
        });
        let lock = |subject: String| -> Result<TransactWriteItem, BoxError> {
            Ok(TransactWriteItem::builder()
                .condition_check(
                    ConditionCheck::builder()
                        .table_name(&fraud)
                        .set_key(Some(key(format!("LOCK#{subject}"), "LOCK")))
                        .condition_expression("attribute_not_exists(pk) OR locked_until <= :now")
                        .expression_attribute_values(":now", n(ts))
                        .return_values_on_condition_check_failure(
                            ReturnValuesOnConditionCheckFailure::AllOld,
                        )
                        .build()?,
                )
                .build())
        };
        let update = |u: aws_sdk_dynamodb::types::builders::UpdateBuilder| -> Result<TransactWriteItem, BoxError> {
            Ok(TransactWriteItem::builder().update(u.build()?).build())
        };
        let put = |table: &str,
                   item: HashMap<String, AttributeValue>,
                   condition: Option<&str>|
         -> Result<TransactWriteItem, BoxError> {
            Ok(TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(item))
                        .set_condition_expression(condition.map(str::to_string))
                        .build()?,
                )
                .build())
        };

        let mut items = vec![update(
            Update::builder()
                .table_name(&codes)
                .set_key(Some(key(format!("CODE#{}", code.canonical()), "CODE")))
                .update_expression(
                    "SET #st = :claimed, claimed_by = :p, claimed_at = :now, receipt = :receipt",
                )
                .condition_expression("#st = :issued AND valid_until >= :today")
                .expression_attribute_names("#st", "status")
                .expression_attribute_values(":claimed", s("claimed"))
                .expression_attribute_values(":issued", s("issued"))
                .expression_attribute_values(":p", s(&participant))
                .expression_attribute_values(":now", s(&now.to_rfc3339()))
                .expression_attribute_values(":today", s(&now.date_naive().to_string()))
                .expression_attribute_values(":receipt", s(&receipt.to_string()))
                .return_values_on_condition_check_failure(
                    ReturnValuesOnConditionCheckFailure::AllOld,
                ),
        )?];
        let assumed = loyalty_domain::participant::ProfileFacts {
            region: loyalty_domain::ids::RegionId::parse("north").ok(),
            outlet: OutletId::parse("o-bench").ok(),
        };
        items.push(
            TransactWriteItem::builder()
                .condition_check(
                    loyalty_platform::stores::profiles::profile_check(
                        rig.table("ParticipantsTable"),
                        &ParticipantId::parse(&participant)?,
                        &assumed,
                    )
                    .return_values_on_condition_check_failure(
                        ReturnValuesOnConditionCheckFailure::AllOld,
                    )
                    .build()?,
                )
                .build(),
        );
        items.push(lock(format!("P#{participant}"))?);
        items.push(lock("O#o-bench".into())?);
        items.push(update(
            Update::builder()
                .table_name(&fraud)
                .set_key(Some(key(
                    format!("VELOCITY#P#{participant}#{window}"),
                    "COUNTER",
                )))
                .update_expression("ADD hits :one SET #ttl = :ttl")
                .condition_expression("attribute_not_exists(hits) OR hits < :limit")
                .expression_attribute_names("#ttl", "ttl")
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":ttl", n(window + 7200))
                .expression_attribute_values(":limit", n(60)),
        )?);
        items.push(put(
            &ledger,
            entry_item(&entry),
            Some("attribute_not_exists(pk)"),
        )?);
        let balance = balance_update(
            &ledger,
            key(format!("ACCOUNT#{participant}"), "BALANCE"),
            &entry.delta(),
            now,
        )
        .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld);
        let balance = if version == 0 {
            balance.condition_expression("attribute_not_exists(version)")
        } else {
            balance
                .condition_expression("version = :expected")
                .expression_attribute_values(":expected", n(version as i64))
        };
        items.push(update(balance)?);
        items.push(update(balance_update(
            &ledger,
            key("OUTLET#o-bench".into(), "TOTALS"),
            &entry.delta(),
            now,
        ))?);
        // The programme side of the double entry: the codes account gives what the member
        // gets, on the entry's shard, so the sum over all accounts stays zero.
        let shard = programme_shard(&entry.id);
        items.push(update(
            Update::builder()
                .table_name(&ledger)
                .set_key(Some(key(format!("PROGRAMME#codes#{shard:02}"), "BALANCE")))
                .update_expression(
                    "ADD programme_balance :change, version :one \
                     SET programme_account = :account, programme_shard = :shard, updated_at = :now",
                )
                .expression_attribute_values(":change", n(-(POINTS as i64)))
                .expression_attribute_values(":one", n(1))
                .expression_attribute_values(":account", s("codes"))
                .expression_attribute_values(":shard", n(shard as i64))
                .expression_attribute_values(":now", s(&now.to_rfc3339())),
        )?);
        let event_id = format!("code_accepted-{}", entry.id);
        let payload = serde_json::json!({
            "type": "code_accepted", "participant_id": participant, "entry_id": entry.id.as_str(),
            "points": POINTS, "sku": "COLA-05", "product_type": "Cola 0.5 l",
            "available": (version + 1) * POINTS, "occurred_at": now.to_rfc3339(),
        });
        items.push(put(
            &outbox,
            HashMap::from([
                ("pk".to_string(), s(&format!("OUTBOX#{event_id}"))),
                ("sk".to_string(), s("OUTBOX")),
                ("event_id".to_string(), s(&event_id)),
                ("payload".to_string(), s(&payload.to_string())),
                ("ttl".to_string(), n(ts + 7 * 24 * 3600)),
            ]),
            Some("attribute_not_exists(pk)"),
        )?);
        items.push(put(
            &fraud,
            HashMap::from([
                ("pk".to_string(), s(&format!("ATTEMPTS#{participant}"))),
                (
                    "sk".to_string(),
                    s(&format!(
                        "{}#{:012x}",
                        now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
                        i
                    )),
                ),
                ("outcome".to_string(), s("accepted")),
                (
                    "code_hint".to_string(),
                    s(&loyalty_domain::redact::tail(code.canonical())),
                ),
                ("at".to_string(), s(&now.to_rfc3339())),
                ("ttl".to_string(), n(ts + 400 * 24 * 3600)),
                ("outlet_id".to_string(), s("o-bench")),
            ]),
            None,
        )?);
        Ok(items)
    }
}
