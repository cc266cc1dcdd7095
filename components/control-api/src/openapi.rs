//! `GET /api/openapi.json` (OpenAPI 3.1, generated with utoipa) and
//! `GET /api/docs` (an offline page that renders it). Both are public: they
//! hold no data, and a browser cannot send the bearer token on navigation.
//!
//! Every body in it, asked or answered, is a type the components use:
//! the answers are `stepwise_engine::views` (and the key and subscription
//! views of this component), the requests the types the handlers parse or,
//! where a component reads a body field by field, the engine type it reads
//! it into (`AccountSpec`, `TransferRequest`, `payment::Notification`, the
//! saga definition format). So the document and the API cannot differ.
//!
//! The functions below only carry the `#[utoipa::path]` of each route.

#![allow(dead_code)]

use spin_sdk::http::{Params, Request, Response};
use stepwise_engine::otp::Submission;
use stepwise_engine::policy::{Policy, PolicyPatch};
use stepwise_web::{query, ApiResult};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use stepwise_engine::views::ledger::{
    AccountLine, AccountList, AccountView, JournalLine, JournalList, JournalView, TransferList, TransferView,
};
use stepwise_engine::views::operations::{
    Health, OtpQueueStatus, RequestLog, RequestLogEntry, RequestLogStatus, StateCounts, Status,
};
use stepwise_engine::views::otp::{OtpItem, OtpList, OtpSubmitted};
use stepwise_engine::views::sagas::{
    CompensationView, DefinitionStats, NotificationAnswer, OutboxEvent, OutboxPage, SagaDefinitionList,
    SagaDefinitionView, SagaEventView, SagaHistory, SagaList, SagaStats, SagaStepView, SagaView, StepDurations,
};
use stepwise_engine::views::worker::{
    BulkAnswer, CurrentTransaction, IterationList, IterationRow, IterationView, StartedWorkers, WorkerList, WorkerView,
};
use stepwise_engine::views::{ErrorBody, ErrorDetail};

use crate::workers::{BulkRequest, StartRequest};

/// Liveness; no auth.
#[utoipa::path(get, path = "/api/health", tag = "operations", security(()),
    responses((status = 200, body = Health), (status = 500, body = ErrorBody)))]
fn health() {}

/// Workers by state, the OTP queue, the request log's size.
#[utoipa::path(get, path = "/api/status", tag = "operations",
    responses((status = 200, body = Status), (status = 401, body = ErrorBody)))]
fn status() {}

/// The request log, newest first.
#[utoipa::path(get, path = "/api/requests", tag = "operations",
    params(("binding_id" = Option<String>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = RequestLog), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
fn requests() {}

/// Prometheus metrics (OpenMetrics text); a `read` key.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "OpenMetrics text exposition", content_type = "application/openmetrics-text"),
              (status = 401, body = ErrorBody)))]
fn metrics() {}

/// This document; no auth.
#[utoipa::path(get, path = "/api/openapi.json", tag = "operations", security(()),
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
fn openapi_json() {}

/// A page that renders this document; no auth.
#[utoipa::path(get, path = "/api/docs", tag = "operations", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html")))]
fn docs() {}

/// Workers, by binding id.
#[utoipa::path(get, path = "/api/workers", tag = "workers",
    params(("state" = Option<String>, Query, description = "running, pausing, paused, stopping or stopped"),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = WorkerList), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
fn list_workers() {}

/// Starts workers: a running one is left as it is, a stopped one starts a new run.
#[utoipa::path(post, path = "/api/workers", tag = "workers", request_body = StartRequest,
    responses((status = 202, body = StartedWorkers), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 413, body = ErrorBody)))]
fn start_workers() {}

/// Pauses, resumes or stops many workers.
#[utoipa::path(post, path = "/api/workers/{action}", tag = "workers", request_body = BulkRequest,
    params(("action" = String, Path, description = "pause, resume or stop")),
    responses((status = 202, body = BulkAnswer), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
fn bulk_control() {}

/// One worker.
#[utoipa::path(get, path = "/api/workers/{binding_id}", tag = "workers",
    params(("binding_id" = String, Path)),
    responses((status = 200, body = WorkerView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn get_worker() {}

/// One worker's iterations, newest first.
#[utoipa::path(get, path = "/api/workers/{binding_id}/iterations", tag = "workers",
    params(("binding_id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = IterationList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn iterations() {}

/// Pauses, resumes or stops one worker, at the loop boundary.
#[utoipa::path(post, path = "/api/workers/{binding_id}/{action}", tag = "workers",
    params(("binding_id" = String, Path), ("action" = String, Path, description = "pause, resume or stop")),
    responses((status = 202, body = WorkerView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody)))]
fn control() {}

/// Transactions waiting for an OTP, oldest first.
#[utoipa::path(get, path = "/api/otp", tag = "otp",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 10000)),
    responses((status = 200, body = OtpList), (status = 401, body = ErrorBody)))]
fn otp_list() {}

/// Submits the OTP of a waiting transaction.
#[utoipa::path(post, path = "/api/otp/{transaction_id}", tag = "otp", request_body = Submission,
    params(("transaction_id" = String, Path)),
    responses((status = 202, body = OtpSubmitted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 404, description = "Nothing waits for it (`not_found`), or the wait expired (`otp_expired`)", body = ErrorBody),
              (status = 409, description = "An OTP was already submitted (`already_submitted`)", body = ErrorBody)))]
fn otp_submit() {}

/// The caller's key and the actions the console may offer it.
#[utoipa::path(get, path = "/api/session", tag = "keys",
    responses((status = 200, body = crate::keys::SessionView), (status = 401, body = ErrorBody)))]
fn session() {}

/// Creates an API key (admin): the secret is in this answer only.
#[utoipa::path(post, path = "/api/keys", tag = "keys", request_body = crate::keys::CreateKey,
    responses((status = 201, body = crate::keys::CreatedKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, description = "Not an admin key (`insufficient_scope`)", body = ErrorBody)))]
fn create_key() {}

/// Lists the live keys (admin), never their secrets.
#[utoipa::path(get, path = "/api/keys", tag = "keys",
    responses((status = 200, body = crate::keys::KeyList), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
fn list_keys() {}

/// Revokes a key at once (admin): its next request is 401.
#[utoipa::path(delete, path = "/api/keys/{id}", tag = "keys", params(("id" = String, Path)),
    responses((status = 200, body = crate::keys::KeyView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
fn revoke_key() {}

/// Pages through the audit trail in `seq` order (admin).
#[utoipa::path(get, path = "/api/audit", tag = "keys",
    params(("after" = Option<i64>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("key" = Option<String>, Query)),
    responses((status = 200, body = crate::keys::AuditPage), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody)))]
fn audit() {}

/// Subscribes a webhook or a Redis stream to the outbox's events (operate):
/// a webhook's signing secret is in this answer only.
#[utoipa::path(post, path = "/api/subscriptions", tag = "subscriptions", request_body = crate::subscriptions::CreateSubscription,
    responses((status = 201, body = crate::subscriptions::CreatedSubscription), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody),
              (status = 422, description = "The URL's origin is not in `event_destinations` (`destination_not_allowed`)", body = ErrorBody)))]
fn create_subscription() {}

/// Lists subscriptions by id.
#[utoipa::path(get, path = "/api/subscriptions", tag = "subscriptions",
    params(("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("after" = Option<String>, Query)),
    responses((status = 200, body = crate::subscriptions::SubscriptionList), (status = 401, body = ErrorBody)))]
fn list_subscriptions() {}

/// One subscription: status, delivered `seq`, lag, last error.
#[utoipa::path(get, path = "/api/subscriptions/{id}", tag = "subscriptions", params(("id" = String, Path)),
    responses((status = 200, body = crate::subscriptions::SubscriptionView), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn get_subscription() {}

/// Pauses or resumes a subscription (a disabled one too), or changes its types.
#[utoipa::path(patch, path = "/api/subscriptions/{id}", tag = "subscriptions", params(("id" = String, Path)),
    request_body = crate::subscriptions::PatchSubscription,
    responses((status = 200, body = crate::subscriptions::SubscriptionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "Pausing a disabled subscription (`conflict`)", body = ErrorBody)))]
fn patch_subscription() {}

/// Deletes a subscription at once.
#[utoipa::path(delete, path = "/api/subscriptions/{id}", tag = "subscriptions", params(("id" = String, Path)),
    responses((status = 200, body = crate::subscriptions::SubscriptionView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody)))]
fn delete_subscription() {}

/// A subscription's delivery attempts, newest first.
#[utoipa::path(get, path = "/api/subscriptions/{id}/deliveries", tag = "subscriptions",
    params(("id" = String, Path), ("limit" = Option<u32>, Query, minimum = 1, maximum = 500)),
    responses((status = 200, body = crate::subscriptions::DeliveryList), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
fn subscription_deliveries() {}

/// Sends every event from `from_seq` on again: the same bodies and `webhook-id`s.
#[utoipa::path(post, path = "/api/subscriptions/{id}/replay", tag = "subscriptions", params(("id" = String, Path)),
    request_body = crate::subscriptions::Replay,
    responses((status = 200, body = crate::subscriptions::SubscriptionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "A delivery is in flight (`conflict`)", body = ErrorBody)))]
fn replay_subscription() {}

/// The operator console (HTML).
#[utoipa::path(get, path = "/", tag = "console", security(()),
    responses((status = 200, description = "HTML", content_type = "text/html")))]
fn console() {}

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme("bearer", SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)));
    }
}

/// The answers every route behind the bearer token may give, written once:
/// 401 without a live key, 403 (`insufficient_scope`) where the key's scope
/// may not be enough (every change, and the admin reads), and 503 with
/// `Retry-After` when the database is busy past its lock wait or cannot be
/// reached (the key itself is looked up there); the 503 also on the public
/// routes that write ([`PUBLIC_WRITES`]).
struct AuthAnswers;

/// The public routes (no key) that write to the database: answered 503 as
/// the others are when it is busy or unreachable.
const PUBLIC_WRITES: [&str; 1] = ["/webhooks/midtrans"];

impl Modify for AuthAnswers {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, HttpMethod, Ref, ResponseBuilder};
        let error = |description: &str| {
            let content = ContentBuilder::new().schema(Some(Ref::from_schema_name("ErrorBody"))).build();
            ResponseBuilder::new().description(description).content("application/json", content)
        };
        let unavailable = || {
            let seconds = utoipa::openapi::ObjectBuilder::new().schema_type(utoipa::openapi::schema::Type::Integer);
            let mut retry_after = utoipa::openapi::header::Header::new(seconds);
            retry_after.description = Some("Seconds to wait before trying again".into());
            error(
                "The database stayed busy past its lock wait (`database_busy`) or cannot be reached \
                 (`database_unavailable`); nothing was changed",
            )
            .header("retry-after", retry_after)
            .build()
        };
        let public = utoipa::openapi::security::SecurityRequirement::default();
        for (path, item) in openapi.paths.paths.iter_mut() {
            let admin_read = path == "/api/keys" || path == "/api/audit";
            let operations = [
                (HttpMethod::Get, item.get.as_mut()),
                (HttpMethod::Post, item.post.as_mut()),
                (HttpMethod::Put, item.put.as_mut()),
                (HttpMethod::Patch, item.patch.as_mut()),
                (HttpMethod::Delete, item.delete.as_mut()),
            ];
            for (method, op) in operations {
                let Some(op) = op else { continue };
                let responses = &mut op.responses.responses;
                if op.security.as_ref().is_some_and(|s| s.iter().all(|r| *r == public)) {
                    // A public route that writes to the database can find it busy too.
                    if PUBLIC_WRITES.contains(&path.as_str()) {
                        responses.entry("503".into()).or_insert_with(|| unavailable().into());
                    }
                    continue;
                }
                responses.entry("401".into()).or_insert_with(|| error("No live key (`unauthorized`)").build().into());
                if method != HttpMethod::Get || admin_read {
                    responses.entry("403".into()).or_insert_with(|| {
                        error("The key's scope does not allow it (`insufficient_scope`)").build().into()
                    });
                }
                responses.entry("503".into()).or_insert_with(|| unavailable().into());
            }
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "Stepwise", version = "0.1.0",
         description = "Orchestrates transactions against an upstream service as durable, discrete steps."),
    paths(health, status, requests, metrics, openapi_json, docs, list_workers, start_workers, bulk_control, get_worker,
          iterations, control, otp_list, otp_submit, session, create_key, list_keys, revoke_key, audit, console,
          create_subscription, list_subscriptions, get_subscription, patch_subscription, delete_subscription,
          subscription_deliveries, replay_subscription,
          crate::openapi_sagas::list_definitions, crate::openapi_sagas::create_definition, crate::openapi_sagas::get_definition,
          crate::openapi_sagas::start_saga, crate::openapi_sagas::list_sagas, crate::openapi_sagas::get_saga,
          crate::openapi_sagas::saga_history, crate::openapi_sagas::rollback, crate::openapi_sagas::retry_step,
          crate::openapi_sagas::outbox, crate::openapi_sagas::stats, crate::openapi_sagas::webhook,
          crate::openapi_ledger::create_account, crate::openapi_ledger::list_accounts, crate::openapi_ledger::get_account,
          crate::openapi_ledger::account_status, crate::openapi_ledger::create_transfer, crate::openapi_ledger::list_transfers,
          crate::openapi_ledger::get_transfer, crate::openapi_ledger::get_journal, crate::openapi_ledger::journals_by_ref),
    components(schemas(ErrorBody, ErrorDetail, WorkerView, CurrentTransaction, IterationView, IterationRow, WorkerList,
                       StartedWorkers, BulkAnswer, IterationList, RequestLogEntry, RequestLog, StateCounts, OtpQueueStatus,
                       RequestLogStatus, Status, Health, OtpItem, OtpList, OtpSubmitted, StartRequest, BulkRequest,
                       PolicyPatch, Policy, Submission,
                       SagaView, SagaStepView, CompensationView, SagaList, SagaEventView, SagaHistory, SagaDefinitionView,
                       SagaDefinitionList, OutboxEvent, OutboxPage, SagaStats, DefinitionStats, StepDurations,
                       NotificationAnswer,
                       stepwise_engine::views::saga_definition::SagaRequest,
                       stepwise_engine::views::saga_definition::SagaRetry,
                       stepwise_engine::views::saga_definition::SagaWait,
                       stepwise_engine::views::saga_definition::SagaStepDefinition,
                       stepwise_engine::views::saga_definition::SagaDefinition,
                       stepwise_engine::saga::request::StartRequest, stepwise_engine::saga::request::RollbackRequest,
                       stepwise_engine::payment::Notification,
                       AccountView, AccountLine, AccountList, TransferView, TransferList, JournalLine, JournalView,
                       JournalList, stepwise_engine::ledger::AccountSpec, stepwise_engine::transfer::TransferRequest,
                       crate::keys::CreateKey, crate::keys::KeyView,
                       crate::keys::CreatedKey, crate::keys::KeyList, crate::keys::AuditView, crate::keys::AuditPage,
                       crate::keys::SessionView, stepwise_engine::access::Scope,
                       crate::subscriptions::CreateSubscription, crate::subscriptions::PatchSubscription,
                       crate::subscriptions::Replay, crate::subscriptions::SubscriptionView, crate::subscriptions::PendingView,
                       crate::subscriptions::LastErrorView, crate::subscriptions::CreatedSubscription,
                       crate::subscriptions::SubscriptionList, crate::subscriptions::DeliveryView,
                       crate::subscriptions::DeliveryList)),
    modifiers(&BearerAuth, &AuthAnswers),
    security(("bearer" = [])),
    tags((name = "workers"), (name = "otp"), (name = "sagas", description = "Sagas with compensation, the payment webhook, the event outbox"),
         (name = "ledger", description = "Accounts, transfers with receipts, the double-entry ledger"),
         (name = "keys", description = "API keys, their scopes and the audit trail"),
         (name = "subscriptions", description = "Events pushed out: signed webhooks and Redis streams, in order, replayable"),
         (name = "operations"),
         (name = "console"))
)]
struct ApiDoc;

/// The document as JSON text.
pub fn document() -> String {
    ApiDoc::openapi().to_pretty_json().unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}

/// `GET /api/openapi.json`.
pub fn openapi_json_handler(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .header("cache-control", "no-cache")
        .body(document())
        .build())
}

/// `GET /api/docs`.
pub fn docs_handler(req: &Request, _: &Params) -> ApiResult {
    query(req, &[])?;
    Ok(Response::builder()
        .status(200)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", "no-cache")
        .body(include_str!("docs.html"))
        .build())
}
