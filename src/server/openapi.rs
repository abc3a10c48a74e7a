//! The OpenAPI document, generated from the handlers and types.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::ErrorBody;
use super::routes;
use super::types::{
    Health, InputSpec, JobCreated, JobResult, JobView, ModelInfo, ModelList, PredictResponse,
    Prediction, Timings, VideoSummary, Window,
};

/// The API's OpenAPI description, served at /openapi.json.
#[derive(OpenApi)]
#[openapi(
    info(title = "revstream", description = "Video action recognition: upload a video, get the actions."),
    paths(
        routes::predict,
        routes::create_job,
        routes::get_job,
        routes::job_events,
        routes::cancel_job,
        routes::list_models,
        routes::get_model,
        routes::health,
        routes::metrics,
    ),
    components(schemas(
        ErrorBody, PredictResponse, Prediction, VideoSummary, Timings, JobCreated, JobView,
        JobResult, Window, ModelList, ModelInfo, InputSpec, Health,
    )),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

/// Declares the optional bearer API key.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "api_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
