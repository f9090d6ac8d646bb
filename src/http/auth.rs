//! The token check in front of protected routes. Which permission a route needs is stated
//! where the route is declared ([`super::router`]); the decision itself is [`crate::auth`]'s.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::auth::{Auth, Permission};
use crate::error::ApiError;
use crate::http::extract::topic_from_uri;

/// What a route needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Read the topic named in the path.
    Read,
    /// Write the topic named in the path.
    Write,
    /// The `admin` scope.
    Admin,
    /// The `metrics` scope, unless `auth.open_metrics`.
    Metrics,
    /// Any valid token, unless `auth.open_docs`.
    Docs,
}

/// The state of one route's check.
#[derive(Clone)]
pub struct Guard {
    auth: Arc<Auth>,
    needs: Needs,
}

impl Guard {
    /// A check for `needs`.
    pub fn new(auth: &Arc<Auth>, needs: Needs) -> Guard {
        Guard {
            auth: auth.clone(),
            needs,
        }
    }
}

/// Middleware: passes the request on if its bearer token allows what the route needs, else
/// answers 401 or 403. The request's body is not read before the check passes.
pub async fn check(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let auth = &guard.auth;
    if !auth.is_enabled() {
        return next.run(request).await;
    }
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .map(|value| value.as_bytes());
    let outcome = match guard.needs {
        Needs::Read | Needs::Write => match topic_from_uri(request.uri()) {
            Ok(topic) if guard.needs == Needs::Read => auth.check(header, Permission::Read(&topic)),
            Ok(topic) => auth.check(header, Permission::Write(&topic)),
            // A malformed topic name is told only to a client with a valid token.
            Err(invalid) => match auth.check(header, Permission::Authenticated) {
                Ok(_) => return invalid.into_response(),
                Err(error) => Err(error),
            },
        },
        Needs::Admin => auth.check(header, Permission::Admin),
        Needs::Metrics => auth.check(header, Permission::Metrics),
        Needs::Docs => auth.check(header, Permission::Docs),
    };
    match outcome {
        Ok(_) => next.run(request).await,
        Err(error) => {
            tracing::debug!(reason = error.reason(), %error, "request refused");
            crate::metrics::auth_rejected(error.reason());
            ApiError::Auth(error).into_response()
        }
    }
}
