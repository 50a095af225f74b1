//! The real parts the console's browser tests drive, proven on their own:
//! the OpenID provider (`oidc-provider` on Node.js, see
//! `connector_e2e::oidc_provider`) publishes its endpoints on its issuer and
//! insists on PKCE; a headless Chromium over WebDriver
//! (`connector_e2e::browser`) signs a user in on the provider's login page
//! by the authorization code flow with PKCE, with a tiny HTTP listener here
//! as the relying party's redirect URI, and the ID token the code buys names
//! the user, their groups and the request's nonce; a wrong password is
//! refused; screenshots are PNG files.

use std::collections::BTreeMap;
use std::io::Read;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, channel};
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use connector_e2e::browser::Browser;
use connector_e2e::oidc_provider::{OidcClient, OidcConfig, OidcProvider, OidcUser};
use serde_json::Value;
use sha2::{Digest, Sha256};

const CLIENT_ID: &str = "console";
const CLIENT_SECRET: &str = "console-secret-for-tests";
const SCOPES: &str = "openid email profile groups";

fn ada() -> OidcUser {
    OidcUser {
        sub: "ada-0001".into(),
        email: "ada@example.test".into(),
        name: "Ada Lovelace".into(),
        password: "correct horse battery staple".into(),
        groups: vec!["archive-admins".into(), "auditors".into()],
    }
}

/// The relying party's redirect URI: a loopback listener that answers every
/// request with a short page and hands its path and query to the test.
struct RelyingParty {
    server: Arc<tiny_http::Server>,
    redirect_uri: String,
    requests: Receiver<String>,
}

impl RelyingParty {
    fn start() -> RelyingParty {
        let server = Arc::new(tiny_http::Server::http("127.0.0.1:0").expect("binding a port"));
        let port = server.server_addr().to_ip().expect("an IP listener").port();
        let (sender, requests) = channel();
        let listener = Arc::clone(&server);
        std::thread::spawn(move || {
            for request in listener.incoming_requests() {
                // The browser also asks for /favicon.ico.
                if request.url().starts_with("/callback") {
                    let _ = sender.send(request.url().to_string());
                }
                let _ = request.respond(tiny_http::Response::from_string(
                    "The relying party received the answer.",
                ));
            }
        });
        RelyingParty {
            server,
            redirect_uri: format!("http://127.0.0.1:{port}/callback"),
            requests,
        }
    }

    /// The query of the next request to the redirect URI (`/callback`).
    fn answer(&self) -> BTreeMap<String, String> {
        let url = self
            .requests
            .recv_timeout(Duration::from_secs(30))
            .expect("the browser came back to the redirect URI");
        let url = url::Url::parse(&format!("http://rp{url}")).expect("a request target");
        assert_eq!(url.path(), "/callback");
        url.query_pairs().into_owned().collect()
    }
}

impl Drop for RelyingParty {
    fn drop(&mut self) {
        self.server.unblock();
    }
}

fn provider_for(rp: &RelyingParty) -> OidcProvider {
    OidcProvider::start(&OidcConfig {
        clients: vec![OidcClient {
            client_id: CLIENT_ID.into(),
            client_secret: CLIENT_SECRET.into(),
            redirect_uris: vec![rp.redirect_uri.clone()],
            post_logout_redirect_uris: Vec::new(),
        }],
        users: vec![ada()],
    })
}

/// The JSON body of a successful answer to `request`.
fn json(request: ureq::Request, what: &str) -> Value {
    let text = request
        .call()
        .unwrap_or_else(|e| panic!("{what} did not answer: {e}"))
        .into_string()
        .unwrap_or_else(|e| panic!("reading {what}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what} is not JSON ({e}): {text}"))
}

fn discovery(provider: &OidcProvider) -> Value {
    json(
        ureq::get(&provider.discovery_url()),
        "the discovery document",
    )
}

/// 32 random bytes, base64url: a state, a nonce or a PKCE code verifier.
fn random_token() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("reading /dev/urandom");
    URL_SAFE_NO_PAD.encode(bytes)
}

/// One authorization request of the relying party, with PKCE (S256).
struct Authorization {
    url: String,
    state: String,
    nonce: String,
    code_verifier: String,
}

fn authorization(provider: &OidcProvider, rp: &RelyingParty) -> Authorization {
    let code_verifier = random_token();
    let challenge = URL_SAFE_NO_PAD.encode(Sha256::digest(code_verifier.as_bytes()));
    let (state, nonce) = (random_token(), random_token());
    let endpoint = discovery(provider)["authorization_endpoint"]
        .as_str()
        .expect("an authorization endpoint")
        .to_string();
    let url = url::Url::parse_with_params(
        &endpoint,
        [
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("scope", SCOPES),
            ("redirect_uri", &rp.redirect_uri),
            ("state", &state),
            ("nonce", &nonce),
            ("code_challenge", &challenge),
            ("code_challenge_method", "S256"),
        ],
    )
    .expect("an authorization URL");
    Authorization {
        url: url.to_string(),
        state,
        nonce,
        code_verifier,
    }
}

/// The token endpoint's answer to the code with `code_verifier`: the JSON
/// on success, the status and body otherwise.
fn redeem(
    provider: &OidcProvider,
    rp: &RelyingParty,
    code: &str,
    code_verifier: &str,
) -> Result<Value, (u16, String)> {
    let endpoint = discovery(provider)["token_endpoint"]
        .as_str()
        .expect("a token endpoint")
        .to_string();
    let basic =
        base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
    match ureq::post(&endpoint)
        .set("Authorization", &format!("Basic {basic}"))
        .send_form(&[
            ("grant_type", "authorization_code"),
            ("code", code),
            ("redirect_uri", &rp.redirect_uri),
            ("code_verifier", code_verifier),
        ]) {
        Ok(answer) => Ok(
            serde_json::from_str(&answer.into_string().expect("a token answer"))
                .expect("the token answer is JSON"),
        ),
        Err(ureq::Error::Status(status, answer)) => {
            Err((status, answer.into_string().unwrap_or_default()))
        }
        Err(e) => panic!("the token endpoint did not answer: {e}"),
    }
}

/// The payload of a JWT (its signature is not checked here).
fn jwt_claims(jwt: &str) -> Value {
    let payload = jwt.split('.').nth(1).expect("a JWT has a payload");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).expect("base64url"))
        .expect("the payload is JSON")
}

#[test]
fn the_provider_publishes_its_endpoints_on_its_issuer_and_refuses_an_authorization_without_pkce() {
    let rp = RelyingParty::start();
    let provider = provider_for(&rp);
    let issuer = provider.issuer();
    let doc = discovery(&provider);
    assert_eq!(doc["issuer"], issuer.as_str(), "{doc}");
    for endpoint in [
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "end_session_endpoint",
    ] {
        let url = doc[endpoint].as_str().unwrap_or_default();
        assert!(
            url.starts_with(&format!("{issuer}/")),
            "{endpoint} {url:?} is not on the issuer {issuer}"
        );
    }
    assert_eq!(
        doc["code_challenge_methods_supported"],
        serde_json::json!(["S256"])
    );
    let scopes = doc["scopes_supported"].as_array().expect("scopes");
    for scope in SCOPES.split(' ') {
        assert!(scopes.contains(&scope.into()), "{scope} missing: {doc}");
    }
    let claims = doc["claims_supported"].as_array().expect("claims");
    for claim in ["email", "name", "groups"] {
        assert!(claims.contains(&claim.into()), "{claim} missing: {doc}");
    }
    let jwks = json(ureq::get(doc["jwks_uri"].as_str().unwrap()), "the JWKS");
    let key = &jwks["keys"][0];
    assert_eq!((&key["kty"], &key["alg"]), (&"RSA".into(), &"RS256".into()));
    assert!(key.get("d").is_none(), "the JWKS publishes a private key");

    // The same request as a browser's, without code_challenge: the provider
    // sends the browser back to the client with the error.
    let without_pkce = url::Url::parse_with_params(
        doc["authorization_endpoint"].as_str().unwrap(),
        [
            ("client_id", CLIENT_ID),
            ("response_type", "code"),
            ("scope", SCOPES),
            ("redirect_uri", &rp.redirect_uri),
            ("state", "no-pkce"),
        ],
    )
    .unwrap();
    let answer = ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .get(without_pkce.as_str())
        .call()
        .expect("the provider answers");
    assert_eq!(answer.status(), 303, "{}", provider.log());
    let location = url::Url::parse(answer.header("location").expect("a redirect")).unwrap();
    assert!(
        location.as_str().starts_with(&rp.redirect_uri),
        "{location}"
    );
    let query: BTreeMap<String, String> = location.query_pairs().into_owned().collect();
    assert_eq!(query["error"], "invalid_request", "{location}");
    assert!(query["error_description"].contains("PKCE"), "{location}");
    assert_eq!(query["state"], "no-pkce");
    assert!(!query.contains_key("code"), "{location}");
}

#[test]
fn a_user_signs_in_in_the_browser_by_code_with_pkce_and_the_id_token_names_them_and_their_groups() {
    let rp = RelyingParty::start();
    let provider = provider_for(&rp);
    let browser = Browser::start();
    let request = authorization(&provider, &rp);
    browser.goto(&request.url);
    browser.wait_for_text(&format!("Sign in to {CLIENT_ID}"));
    let interaction = browser
        .cookies()
        .into_iter()
        .find(|c| c.name == "_interaction")
        .expect("the login page set its interaction cookie");
    assert!(interaction.http_only, "{interaction:?}");
    assert_eq!(
        interaction.same_site.as_deref(),
        Some("Lax"),
        "{interaction:?}"
    );
    assert!(
        !interaction.secure,
        "a cookie of a plain-HTTP issuer: {interaction:?}"
    );

    browser.fill("username", &ada().email);
    browser.fill("password", &ada().password);
    browser.click_button("Sign in");
    browser.wait_for_url("the redirect URI", |url| url.starts_with(&rp.redirect_uri));
    browser.wait_for_text("The relying party received the answer.");
    let answer = rp.answer();
    assert_eq!(answer["state"], request.state);
    assert_eq!(answer["iss"], provider.issuer());
    let code = &answer["code"];

    let tokens = redeem(&provider, &rp, code, &request.code_verifier)
        .unwrap_or_else(|e| panic!("the code was refused: {e:?}\n{}", provider.log()));
    let id = jwt_claims(tokens["id_token"].as_str().expect("an ID token"));
    assert_eq!(id["iss"], provider.issuer());
    assert_eq!(id["aud"], CLIENT_ID);
    assert_eq!(id["sub"], ada().sub);
    assert_eq!(id["email"], ada().email);
    assert_eq!(id["name"], ada().name);
    assert_eq!(id["groups"], serde_json::json!(ada().groups));
    assert_eq!(id["nonce"], request.nonce);
    let userinfo = json(
        ureq::get(discovery(&provider)["userinfo_endpoint"].as_str().unwrap()).set(
            "Authorization",
            &format!("Bearer {}", tokens["access_token"].as_str().unwrap()),
        ),
        "userinfo",
    );
    assert_eq!(
        (&userinfo["email"], &userinfo["groups"]),
        (&id["email"], &id["groups"])
    );
    assert!(
        redeem(&provider, &rp, code, &request.code_verifier).is_err(),
        "a code buys tokens once"
    );

    // Signed in at the provider, the browser comes straight back with a new
    // code, which the wrong verifier does not buy.
    let again = authorization(&provider, &rp);
    browser.goto(&again.url);
    browser.wait_for_url("the redirect URI", |url| url.starts_with(&rp.redirect_uri));
    let answer = rp.answer();
    let (status, body) = redeem(&provider, &rp, &answer["code"], &request.code_verifier)
        .expect_err("a code is redeemed only with its own verifier");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_grant"), "{body}");
}

#[test]
fn a_wrong_password_is_refused_on_the_providers_login_page() {
    let rp = RelyingParty::start();
    let provider = provider_for(&rp);
    let browser = Browser::start();
    browser.goto(&authorization(&provider, &rp).url);
    browser.fill("username", &ada().email);
    browser.fill("password", "not her password");
    browser.click_button("Sign in");
    let page = browser.wait_for_text("Invalid username or password.");
    assert!(page.contains(&format!("Sign in to {CLIENT_ID}")), "{page}");
    let url = browser.current_url();
    assert!(url.starts_with(&provider.issuer()), "{url}");
    assert!(
        rp.requests.try_recv().is_err(),
        "the relying party heard from a refused sign-in"
    );
    assert!(
        provider.log().contains("login refused"),
        "{}",
        provider.log()
    );
}

#[test]
fn a_screenshot_of_the_page_is_written_as_a_png_of_the_window() {
    let page = "<!DOCTYPE html><html><head><title>Parts</title></head>\
                <body><h1>A page to look at</h1></body></html>";
    let origin = connector_e2e::serve_files(BTreeMap::from([(
        "/page.html".to_string(),
        page.as_bytes().to_vec(),
    )]));
    let browser = Browser::start();
    browser.goto(&format!("{origin}/page.html"));
    assert_eq!(
        browser.run_script("return document.title;", Vec::new()),
        "Parts"
    );
    assert!(browser.page_text().contains("A page to look at"));
    let path = browser.screenshot("browser-parts-page");
    assert!(path.starts_with(connector_e2e::browser::screenshot_dir()));
    let png = std::fs::read(&path).expect("the screenshot was written");
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    assert_eq!(&png[12..16], b"IHDR", "the PNG starts with its header");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!(width, 1280, "the window is 1280 wide");
    assert!(height > 0 && height <= 800, "{height}");
}
