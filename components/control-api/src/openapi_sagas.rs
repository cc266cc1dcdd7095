//! The OpenAPI description of the saga routes (served by the `sagas`
//! component), the payment webhook (the `webhook` component) and the event
//! outbox; part of the one document at `/api/openapi.json`. Every body,
//! asked or answered, is an engine type.

#![allow(dead_code)]

use stepwise_engine::payment::Notification;
use stepwise_engine::saga::request::{RollbackRequest, StartRequest};
use stepwise_engine::views::saga_definition::SagaDefinition;
use stepwise_engine::views::sagas::{
    NotificationAnswer, OutboxPage, SagaDefinitionList, SagaDefinitionView, SagaHistory, SagaList, SagaStats, SagaView,
};
use stepwise_engine::views::ErrorBody;

/// Lists the newest version of each definition (the built-ins are stored at first use).
#[utoipa::path(get, path = "/api/saga-definitions", tag = "sagas",
    responses((status = 200, body = SagaDefinitionList), (status = 401, body = ErrorBody)))]
pub fn list_definitions() {}

/// Stores a definition (a name posted again stores the next version).
#[utoipa::path(post, path = "/api/saga-definitions", tag = "sagas", request_body = SagaDefinition,
    responses((status = 201, body = SagaDefinitionView), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
              (status = 422, description = "`invalid_definition`, naming the path of the first fault", body = ErrorBody)))]
pub fn create_definition() {}

/// The newest version of one definition.
#[utoipa::path(get, path = "/api/saga-definitions/{name}", tag = "sagas", params(("name" = String, Path)),
    responses((status = 200, body = SagaDefinitionView), (status = 404, body = ErrorBody)))]
pub fn get_definition() {}

/// Starts a saga.
#[utoipa::path(post, path = "/api/sagas", tag = "sagas", request_body = StartRequest,
    responses((status = 202, body = SagaView), (status = 200, description = "The same idempotency key and body: the same saga", body = SagaView),
              (status = 400, body = ErrorBody), (status = 404, description = "Unknown definition", body = ErrorBody),
              (status = 409, description = "`idempotency_key_reused`", body = ErrorBody)))]
pub fn start_saga() {}

/// Sagas by id.
#[utoipa::path(get, path = "/api/sagas", tag = "sagas",
    params(("status" = Option<String>, Query), ("definition" = Option<String>, Query),
           ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("cursor" = Option<String>, Query)),
    responses((status = 200, body = SagaList), (status = 400, body = ErrorBody)))]
pub fn list_sagas() {}

/// One saga.
#[utoipa::path(get, path = "/api/sagas/{id}", tag = "sagas", params(("id" = String, Path)),
    responses((status = 200, body = SagaView), (status = 404, body = ErrorBody)))]
pub fn get_saga() {}

/// A saga's history, oldest first.
#[utoipa::path(get, path = "/api/sagas/{id}/events", tag = "sagas", params(("id" = String, Path)),
    responses((status = 200, body = SagaHistory), (status = 404, body = ErrorBody)))]
pub fn saga_history() {}

/// Compensates the saga (from running, waiting or failed, before the pivot; a call in flight finishes first).
#[utoipa::path(post, path = "/api/sagas/{id}/rollback", tag = "sagas", params(("id" = String, Path)), request_body = RollbackRequest,
    responses((status = 202, body = SagaView), (status = 404, body = ErrorBody), (status = 409, description = "Past the pivot, or ended", body = ErrorBody)))]
pub fn rollback() {}

/// Runs the held step (or its compensation) again with fresh attempts (only in `failed`).
#[utoipa::path(post, path = "/api/sagas/{id}/steps/{step}/retry", tag = "sagas",
    params(("id" = String, Path), ("step" = String, Path)),
    responses((status = 202, body = SagaView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub fn retry_step() {}

/// The event outbox in `seq` order.
#[utoipa::path(get, path = "/api/events", tag = "sagas",
    params(("after" = Option<i64>, Query), ("limit" = Option<u32>, Query, minimum = 1, maximum = 1000), ("type" = Option<String>, Query)),
    responses((status = 200, body = OutboxPage), (status = 400, body = ErrorBody)))]
pub fn outbox() {}

/// Per definition: sagas by status, p50/p99 duration per step, failures, compensations and retries.
#[utoipa::path(get, path = "/api/stats", tag = "sagas",
    responses((status = 200, body = SagaStats), (status = 400, body = ErrorBody)))]
pub fn stats() {}

/// The Midtrans payment webhook; no bearer token: the signature authenticates.
#[utoipa::path(post, path = "/webhooks/midtrans", tag = "sagas", security(()), request_body = Notification,
    responses((status = 200, description = "Accepted, or a duplicate (nothing changes)", body = NotificationAnswer),
              (status = 400, body = ErrorBody), (status = 401, description = "`invalid_signature`", body = ErrorBody),
              (status = 404, description = "No saga waits for or has waited for that order", body = ErrorBody),
              (status = 413, body = ErrorBody)))]
pub fn webhook() {}
