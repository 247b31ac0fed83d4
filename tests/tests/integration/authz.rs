//! Authorisation of every HTTP route, as a table: no verified token is 401, a role the route
//! does not serve is 403, and a caller reaching for someone else's data is 403.
//!
//! To cover another function, add its routes to `ROUTES`, its `App` to `Apps`, and its
//! "not yours" cases to a test like `participants_never_reach_other_participants_or_outlets`.

use std::collections::BTreeSet;

use lambda_http::http::StatusCode;
use loyalty_local::template::EventSource;
use loyalty_tests::{body_json, template, ApiEvent, TestStack};
use serde_json::{json, Value};

use crate::participants::{rep, Fixture};

struct Route {
    function: &'static str,
    /// API Gateway's route key, as declared in template.yaml.
    route: &'static str,
    /// A sample event under `events/` whose claims are allowed on the route.
    event: &'static str,
    /// Roles the route refuses.
    refused: &'static [&'static str],
}

const ROUTES: &[Route] = &[
    Route {
        function: "ParticipantsFunction",
        route: "POST /invitations",
        event: "participants/create-invitation.json",
        refused: &["participant"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "POST /passcodes",
        event: "participants/request-passcode.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "POST /passcodes/verify",
        event: "participants/verify-passcode.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "POST /registrations",
        event: "participants/register.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "POST /registrations/imported",
        event: "participants/adopt-imported-member.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "GET /me",
        event: "participants/get-profile.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "PATCH /me",
        event: "participants/update-profile.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "PUT /me/phone",
        event: "participants/change-phone.json",
        refused: &["rep", "admin"],
    },
    // Open to all three roles; what each may see is checked by the "not yours" test below.
    Route {
        function: "ParticipantsFunction",
        route: "GET /outlets/{outletId}/members",
        event: "participants/list-outlet-members.json",
        refused: &[],
    },
    Route {
        function: "ParticipantsFunction",
        route: "GET /zone/outlets",
        event: "participants/list-zone-outlets.json",
        refused: &["participant", "admin"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "GET /admin/members/by-phone/{phone}",
        event: "participants/find-member-by-phone.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "POST /admin/members/import",
        event: "participants/import-members.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "POST /admin/participants/{participantId}/block",
        event: "participants/block-participant.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "ParticipantsFunction",
        route: "POST /admin/participants/{participantId}/unblock",
        event: "participants/unblock-participant.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "CodeClaimFunction",
        route: "POST /claims",
        event: "code-claim/claim.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "WalletFunction",
        route: "GET /me/balance",
        event: "wallet/get-balance.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "WalletFunction",
        route: "GET /me/ledger",
        event: "wallet/get-ledger.json",
        refused: &["rep", "admin"],
    },
    // Owners see their outlet, admins any; sellers and other outlets are in the test below.
    Route {
        function: "WalletFunction",
        route: "GET /outlets/{outletId}/totals",
        event: "wallet/get-outlet-totals.json",
        refused: &["rep"],
    },
    Route {
        function: "CodesAdminFunction",
        route: "POST /admin/batches",
        event: "codes-admin/create-batch.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "CodesAdminFunction",
        route: "GET /admin/batches/{batchId}",
        event: "codes-admin/get-batch.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "CodesAdminFunction",
        route: "GET /admin/reviews",
        event: "codes-admin/list-reviews.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "CodesAdminFunction",
        route: "POST /admin/reviews/{reviewId}/decision",
        event: "codes-admin/decide-review.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "POST /actions",
        event: "accrual/report-action.json",
        // Admins report reviewer rules, services with their scope report service rules.
        refused: &["rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "GET /me/challenges",
        event: "accrual/list-my-challenges.json",
        refused: &["rep", "admin"],
    },
    Route {
        function: "AccrualFunction",
        route: "POST /admin/sell-in",
        event: "accrual/import-sell-in.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "GET /admin/rules",
        event: "accrual/list-rules.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "PUT /admin/rules/{ruleId}",
        event: "accrual/put-rule.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "GET /admin/tiers",
        event: "accrual/get-tiers.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "PUT /admin/tiers",
        event: "accrual/put-tiers.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "PUT /admin/programme",
        event: "accrual/put-programme-zone.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "GET /admin/regions",
        event: "accrual/list-regions.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "PUT /admin/regions/{regionId}",
        event: "accrual/put-region-zone.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "PUT /admin/challenges/{challengeId}",
        event: "accrual/put-challenge.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "POST /admin/rules/{ruleId}/budget",
        event: "accrual/fund-rule-budget.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "POST /admin/challenges/{challengeId}/budget",
        event: "accrual/fund-challenge-budget.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "GET /admin/rules/{ruleId}/budget",
        event: "accrual/get-rule-budget.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "AccrualFunction",
        route: "GET /admin/challenges/{challengeId}/budget",
        event: "accrual/get-challenge-budget.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "PartnerWebhooksFunction",
        route: "PUT /admin/partners/{partnerId}",
        event: "partner-webhooks/put-partner.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "PartnerWebhooksFunction",
        route: "POST /admin/partners/{partnerId}/budget",
        event: "partner-webhooks/fund-partner-budget.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "PartnerWebhooksFunction",
        route: "GET /admin/partners/{partnerId}/budget",
        event: "partner-webhooks/get-partner-budget.json",
        refused: &["participant", "rep"],
    },
    Route {
        function: "PartnerWebhooksFunction",
        route: "PUT /admin/regions/{regionId}/minimum-order",
        event: "partner-webhooks/put-region-minimum-order.json",
        refused: &["participant", "rep"],
    },
];

/// One instance of every function under test, over one fresh stack.
struct Apps {
    participants: participants::App,
    claims: code_claim::App,
    wallet: wallet::App,
    codes_admin: codes_admin::App,
    partner_webhooks: partner_webhooks::App,
    accrual: accrual::App,
}

impl Apps {
    async fn new() -> Apps {
        let stack = TestStack::for_functions(&functions()).await;
        Apps {
            participants: participants::App::new(
                &stack.aws,
                &stack.env_for("ParticipantsFunction"),
            )
            .unwrap(),
            claims: code_claim::App::new(&stack.aws, &stack.env_for("CodeClaimFunction")).unwrap(),
            wallet: wallet::App::new(&stack.aws, &stack.env_for("WalletFunction")).unwrap(),
            codes_admin: codes_admin::App::new(&stack.aws, &stack.env_for("CodesAdminFunction"))
                .unwrap(),
            partner_webhooks: partner_webhooks::App::new(
                &stack.aws,
                &stack.env_for("PartnerWebhooksFunction"),
            )
            .unwrap(),
            accrual: accrual::App::new(&stack.aws, &stack.env_for("AccrualFunction")).unwrap(),
        }
    }

    async fn call(&self, function: &str, event: ApiEvent) -> (StatusCode, Value) {
        let response = match function {
            "ParticipantsFunction" => self.participants.handle(event.request()).await,
            "CodeClaimFunction" => self.claims.handle(event.request()).await,
            "WalletFunction" => self.wallet.handle(event.request()).await,
            "CodesAdminFunction" => self.codes_admin.handle(event.request()).await,
            "PartnerWebhooksFunction" => self.partner_webhooks.handle(event.request()).await,
            "AccrualFunction" => self.accrual.handle(event.request()).await,
            other => panic!("no App for {other}: add it to Apps"),
        }
        .expect("the handler answers");
        (response.status(), body_json(&response))
    }
}

fn functions() -> Vec<&'static str> {
    ROUTES
        .iter()
        .map(|r| r.function)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect()
}

/// Every route behind the JWT authorizer is in the table.
#[test]
fn the_table_lists_every_http_route_of_every_function() {
    let http_functions: BTreeSet<String> = template()
        .functions()
        .unwrap()
        .into_iter()
        .filter(|f| {
            f.events.iter().any(|e| {
                matches!(
                    e.source,
                    EventSource::Http {
                        authorized: true,
                        ..
                    }
                )
            })
        })
        .map(|f| f.logical_id)
        .collect();
    let covered: BTreeSet<String> = functions().into_iter().map(String::from).collect();
    assert_eq!(
        covered, http_functions,
        "every HTTP function needs its routes in ROUTES"
    );
    for function in functions() {
        let declared: BTreeSet<String> = template()
            .function(function)
            .unwrap()
            .events
            .into_iter()
            .filter_map(|e| match e.source {
                // Routes without the JWT authorizer (partner webhooks, which are signed) are
                // not this table's business; their own module tests how they authenticate.
                EventSource::Http {
                    method,
                    path,
                    authorized: true,
                } => Some(format!("{method} {path}")),
                _ => None,
            })
            .collect();
        let tabled: BTreeSet<String> = ROUTES
            .iter()
            .filter(|r| r.function == function)
            .map(|r| r.route.to_string())
            .collect();
        assert_eq!(tabled, declared, "{function}");
    }
}

#[tokio::test]
async fn every_route_refuses_a_request_without_a_verified_token_with_401() {
    let apps = Apps::new().await;
    for route in ROUTES {
        let event = ApiEvent::load(route.event);
        assert_eq!(
            event.0["routeKey"], route.route,
            "{} is the sample of another route",
            route.event
        );
        let (status, body) = apps.call(route.function, event.without_claims()).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::UNAUTHORIZED, Some("unauthenticated")),
            "{}",
            route.route
        );
    }
}

#[tokio::test]
async fn every_route_refuses_the_roles_it_does_not_serve_with_403() {
    let apps = Apps::new().await;
    for route in ROUTES {
        for role in route.refused {
            let event = ApiEvent::load(route.event).role(role);
            let (status, body) = apps.call(route.function, event).await;
            assert_eq!(
                (status, body["code"].as_str()),
                (StatusCode::FORBIDDEN, Some("forbidden")),
                "{} as {role}",
                route.route
            );
        }
    }
}

#[tokio::test]
async fn a_service_token_reaches_no_route_but_reporting_actions() {
    let apps = Apps::new().await;
    for route in ROUTES.iter().filter(|r| r.route != "POST /actions") {
        let event = ApiEvent::load(route.event)
            .role("service")
            .sub("svc-app-orders")
            .claim("scope", "actions:report");
        let (status, body) = apps.call(route.function, event).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (StatusCode::FORBIDDEN, Some("forbidden")),
            "{} as a service",
            route.route
        );
    }
}

#[tokio::test]
async fn participants_never_reach_other_participants_or_outlets() {
    let f = Fixture::new().await;
    let outlet_a = f
        .outlet_with_owner("rep-n1", "p-owner-a", "07700 900901")
        .await;
    let outlet_b = f
        .outlet_with_owner("rep-n2", "p-owner-b", "07700 900902")
        .await;
    let code = f
        .invite(
            rep("rep-n1"),
            json!({ "kind": "join_outlet", "outlet_id": outlet_a }),
        )
        .await;
    assert_eq!(
        f.register("p-seller-a", &code, "07700 900903", None)
            .await
            .0,
        StatusCode::CREATED
    );

    let members = |outlet: &str| {
        ApiEvent::load("participants/list-outlet-members.json").path_param("outletId", outlet)
    };
    let not_yours = [
        (
            "an owner reading another outlet",
            members(&outlet_a)
                .sub("p-owner-b")
                .outlet(&outlet_b, "owner"),
        ),
        (
            "a seller reading their own outlet's members",
            members(&outlet_a)
                .sub("p-seller-a")
                .outlet(&outlet_a, "seller"),
        ),
        (
            "a participant probing an unknown outlet",
            members("o-unknown")
                .sub("p-owner-b")
                .outlet(&outlet_b, "owner"),
        ),
        (
            "a rep reading an outlet of another zone",
            members(&outlet_a)
                .sub("rep-n2")
                .role("rep")
                .without_outlet(),
        ),
        (
            "a rep inviting sellers into an outlet of another zone",
            rep("rep-n2").body(json!({ "kind": "join_outlet", "outlet_id": outlet_a })),
        ),
    ];
    for (case, event) in not_yours {
        let (status, body) = f.call(event).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{case}: {body}");
    }

    // `/me` names no one: whatever a participant sends, they get and change only themselves.
    let me = ApiEvent::load("participants/update-profile.json")
        .sub("p-owner-b")
        .outlet(&outlet_b, "owner");
    let (status, changed) = f.call(me.body(json!({ "name": "B renamed" }))).await;
    assert_eq!(
        (status, changed["id"].as_str()),
        (StatusCode::OK, Some("p-owner-b"))
    );
    let a = ApiEvent::load("participants/get-profile.json")
        .sub("p-owner-a")
        .outlet(&outlet_a, "owner");
    let (_, a) = f.call(a).await;
    assert_eq!(
        (a["id"].as_str(), a["name"].as_str()),
        (Some("p-owner-a"), Some("Member p-owner-a"))
    );

    // A signed-in participant who has not registered has no profile to read.
    let nobody = ApiEvent::load("participants/get-profile.json")
        .sub("p-nobody")
        .without_outlet();
    let (status, body) = f.call(nobody).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (StatusCode::NOT_FOUND, Some("not_registered"))
    );
}
