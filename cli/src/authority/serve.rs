//! `authority serve`: the Attestation Service and the Key Provider Service over HTTPS (rustls, axum on
//! hyper). The only state is the challenges a replica has issued and not yet seen answered (in
//! memory, each used once, dropped when stale); everything else is the policy, read per request.
//! Handlers run their checks on blocking threads: the KMIP client is synchronous.

use super::policy::{AuthConfig, Policy};
use super::token::TokenKeys;
use super::verify::{check_ek, check_evidence, refuse};
use anyhow::{Context, Result};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hyper_util::rt::TokioIo;
use sectorcrypt::keys::{KeyProvider, KeyRef, KmipProvider, ProviderKind};
use sectorcrypt::trusted::credential::make_credential;
use sectorcrypt::trusted::protocol::{
    AttestChallenge, Enrol, Evidence, ImageInfo, KeyChallenge, KeyOp, KeyReply, KeyRequest, Refusal,
    RefusalCode, Token,
};
use sectorcrypt::{Error as ScError, ProviderFault};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use zeroize::Zeroizing;

/// Most challenges one replica keeps open at once.
const MAX_PENDING: usize = 100_000;

/// A challenge issued and not yet answered.
struct Pending {
    nonce: Zeroizing<Vec<u8>>,
    /// For attestation: the AK's name (hex) and the EK's id the credential was sealed to.
    attest: Option<(String, String)>,
    issued: Instant,
}

struct State {
    config: AuthConfig,
    kmip: KmipProvider,
    pending: Mutex<HashMap<String, Pending>>,
}

struct Reply(Result<serde_json::Value, Refusal>);

impl IntoResponse for Reply {
    fn into_response(self) -> Response {
        match self.0 {
            Ok(body) => (StatusCode::OK, Json(body)).into_response(),
            Err(refusal) => {
                let status = match refusal.code {
                    RefusalCode::BadRequest => StatusCode::BAD_REQUEST,
                    RefusalCode::KeyNotFound => StatusCode::NOT_FOUND,
                    RefusalCode::KeyServer => StatusCode::BAD_GATEWAY,
                    RefusalCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
                    _ => StatusCode::FORBIDDEN,
                };
                (status, Json(refusal)).into_response()
            }
        }
    }
}

fn internal(err: impl std::fmt::Display) -> Refusal {
    refuse(RefusalCode::Internal, format!("the authority failed: {err:#}"))
}

fn random(len: usize) -> Result<Zeroizing<Vec<u8>>, Refusal> {
    let mut bytes = Zeroizing::new(vec![0u8; len]);
    getrandom::fill(&mut bytes).map_err(internal)?;
    Ok(bytes)
}

impl State {
    fn policy(&self) -> Result<Policy, Refusal> {
        Policy::load(&self.config).map_err(internal)
    }

    fn keys(&self) -> Result<TokenKeys, Refusal> {
        TokenKeys::load(&self.config.token_key()).map_err(internal)
    }

    /// Files a challenge, dropping every one long stale, and returns its id.
    fn file(&self, nonce: Zeroizing<Vec<u8>>, attest: Option<(String, String)>) -> Result<String, Refusal> {
        let id = hex::encode(&*random(16)?);
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let keep = self.config.challenge_lifetime * 10;
        pending.retain(|_, p| p.issued.elapsed() < keep);
        // Challenges are free to ask for: a flood must not grow the replica's memory without bound.
        if pending.len() >= MAX_PENDING {
            pending.retain(|_, p| p.issued.elapsed() <= self.config.challenge_lifetime);
            if pending.len() >= MAX_PENDING {
                return Err(refuse(RefusalCode::Internal, "too many challenges are open: try again shortly"));
            }
        }
        pending.insert(id.clone(), Pending { nonce, attest, issued: Instant::now() });
        Ok(id)
    }

    /// Takes a challenge out (each answers once), refusing one unknown, used, stale or of the wrong kind.
    fn take(&self, id: &str, attest: bool) -> Result<Pending, Refusal> {
        let taken = self.pending.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
        let Some(pending) = taken.filter(|p| p.attest.is_some() == attest) else {
            return Err(refuse(
                RefusalCode::UnknownChallenge,
                "unknown challenge: already answered, issued by another replica, or never issued",
            ));
        };
        if pending.issued.elapsed() > self.config.challenge_lifetime {
            return Err(refuse(
                RefusalCode::StaleChallenge,
                format!(
                    "the challenge is older than {} s: ask for a new one",
                    self.config.challenge_lifetime.as_secs()
                ),
            ));
        }
        Ok(pending)
    }

    fn attest_challenge(&self, enrol: Enrol) -> Result<AttestChallenge, Refusal> {
        let policy = self.policy()?;
        let ek = check_ek(&policy, &enrol.ek_public, &enrol.ek_certificate)?;
        let bad = |err: sectorcrypt::trusted::AttestError| refuse(RefusalCode::BadRequest, err.to_string());
        let ak = sectorcrypt::trusted::quote::ak_name(&enrol.ak_public).map_err(bad)?;
        let nonce = random(32)?;
        let credential = make_credential(&enrol.ek_public, &ak, &nonce).map_err(bad)?;
        let challenge = self.file(nonce, Some((hex::encode(ak), ek)))?;
        Ok(AttestChallenge {
            challenge,
            id_object: credential.id_object,
            encrypted_secret: credential.encrypted_secret,
            pcrs: self.config.pcrs.clone(),
        })
    }

    fn attest(&self, evidence: Evidence) -> Result<Token, Refusal> {
        let pending = self.take(&evidence.challenge, true)?;
        let (ak, ek) = pending.attest.clone().expect("an attestation challenge");
        let policy = self.policy()?;
        let (ak, image) = check_evidence(&self.config, &policy, &evidence, &pending.nonce, &ak)?;
        let token = self.keys()?.issue(&self.config, &ek, &ak, &image.id)?;
        Ok(Token {
            token,
            expires_in: self.config.token_lifetime.as_secs(),
            image: ImageInfo {
                id: image.id.clone(),
                name: image.image.name.clone(),
                version: image.image.image_version.clone(),
            },
        })
    }

    fn key_challenge(&self, _: Empty) -> Result<KeyChallenge, Refusal> {
        let nonce = random(32)?;
        let challenge = self.file(nonce.clone(), None)?;
        Ok(KeyChallenge { challenge, nonce: nonce.to_vec(), pcrs: self.config.pcrs.clone() })
    }

    fn key(&self, request: KeyRequest) -> Result<KeyReply, Refusal> {
        let claims = self.keys()?.check(&self.config, &request.token)?;
        let pending = self.take(&request.evidence.challenge, false)?;
        let policy = self.policy()?;
        let (_, image) =
            check_evidence(&self.config, &policy, &request.evidence, &pending.nonce, &claims.ak)?;
        if image.id != claims.img {
            return Err(refuse(
                RefusalCode::ExpiredToken,
                "the host's PCRs changed since its token was issued: attest again",
            ));
        }
        let key_ref = match &request.key {
            KeyOp::Create { name } => self.kmip.create_kek(name.as_deref()).map_err(kmip_refusal)?,
            KeyOp::Get { id } => KeyRef::new(ProviderKind::Kmip, &self.kmip.client().config().name, id)
                .map_err(|err| refuse(RefusalCode::BadRequest, err.to_string()))?,
        };
        let kek = self.kmip.get_kek(&key_ref).map_err(kmip_refusal)?;
        Ok(KeyReply { id: key_ref.key_id().to_owned(), key: kek.hazmat_reveal().to_vec() })
    }
}

fn kmip_refusal(err: ScError) -> Refusal {
    let code = match &err {
        ScError::KeyProvider { fault: ProviderFault::NotFound, .. } => RefusalCode::KeyNotFound,
        ScError::KeyProvider { fault: ProviderFault::Revoked, .. } => RefusalCode::KeyRevoked,
        ScError::KeyId(_) => RefusalCode::BadRequest,
        _ => RefusalCode::KeyServer,
    };
    refuse(code, format!("the key server: {err}"))
}

/// Runs `f` on a blocking thread and answers with its outcome.
async fn blocking<T: serde::Serialize + Send + 'static>(
    what: &str,
    state: Arc<State>,
    f: impl FnOnce(&State) -> Result<T, Refusal> + Send + 'static,
) -> Reply {
    let outcome = tokio::task::spawn_blocking(move || f(&state)).await;
    let reply = match outcome {
        Ok(Ok(value)) => serde_json::to_value(value).map_err(internal),
        Ok(Err(refusal)) => Err(refusal),
        Err(join) => Err(internal(join)),
    };
    // The operator's log: every refusal, one line each, as the host was told it.
    if let Err(refusal) = &reply {
        eprintln!("sectorcrypt authority: {what}: refused ({:?}): {}", refusal.code, refusal.message);
    }
    Reply(reply)
}

/// A JSON body, or a `bad-request` refusal that says what is wrong with it.
fn body<T>(body: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> Result<T, Reply> {
    body.map(|Json(value)| value).map_err(|err| {
        Reply(Err(refuse(RefusalCode::BadRequest, format!("the request: {}", err.body_text()))))
    })
}

/// A POST route: its JSON body read as `T` and handed to `f` on a blocking thread.
fn endpoint<T, R>(
    state: &Arc<State>,
    what: &'static str,
    f: fn(&State, T) -> Result<R, Refusal>,
) -> axum::routing::MethodRouter
where
    T: serde::de::DeserializeOwned + Send + 'static,
    R: serde::Serialize + Send + 'static,
{
    let state = state.clone();
    post(move |request: Result<Json<T>, axum::extract::rejection::JsonRejection>| {
        let state = state.clone();
        async move {
            match body(request) {
                Ok(value) => blocking(what, state, move |st| f(st, value)).await,
                Err(reply) => reply,
            }
        }
    })
}

/// The body of a key challenge request: nothing.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Empty {}

pub(crate) fn serve(config: AuthConfig) -> Result<()> {
    // Fail now, not at the first request, on a policy or key that does not load.
    Policy::load(&config)?;
    TokenKeys::load(&config.token_key())?;
    let kmip = KmipProvider::open(&config.kmip)?;
    let tls = super::tls::server_config(&config)?;
    let state = Arc::new(State { config, kmip, pending: Mutex::default() });
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(run(state, tls))
}

async fn run(state: Arc<State>, tls: Arc<rustls::ServerConfig>) -> Result<()> {
    let listener = tokio::net::TcpListener::bind(&state.config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", state.config.listen))?;
    let app = axum::Router::new()
        .route("/v1/attest/challenge", endpoint(&state, "attest/challenge", State::attest_challenge))
        .route("/v1/attest", endpoint(&state, "attest", State::attest))
        .route("/v1/keys/challenge", endpoint(&state, "keys/challenge", State::key_challenge))
        .route("/v1/keys", endpoint(&state, "keys", State::key));
    // The first line on stdout: what a supervisor (or a test) waits for, with the port if it was 0.
    outln!("listening on https://{}", listener.local_addr()?);
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _) = tokio::select! {
            accepted = listener.accept() => accepted?,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(tcp));
            let Ok(Ok(stream)) = handshake.await else { return };
            let service =
                hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let mut app = app.clone();
                    async move { tower_service::Service::call(&mut app, request).await }
                });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
