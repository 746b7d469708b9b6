//! IMS LTI 2.0 ToolProxy documents: reading what registration needs from one, and checking it
//! against the tool consumer profile in use (Canvas `Lti::ToolProxyService`,
//! `IMS::LTI::Services::ToolProxyValidator`, `Lti::ToolProxyValidator`).
//!
//! Differences from Canvas (listed in the README): every failing category is reported (Canvas
//! drops the last one from the `error` string); the tool proxy's own `enabled_capability` is
//! checked against the profile too (so a restricted capability such as
//! `Canvas.placements.similarityDetection` needs the custom profile), apart from the
//! deprecated `OAuth.splitSecret`; and the legacy exemption that ignored every validation error
//! for `OAuth.splitSecret` tools is not kept.

use serde_json::{json, Map, Value};

use crate::profile::{service_id, Profile, SECURITY_PROFILES};
use crate::secrets::{random_bytes, Secret};
use crate::store::{
    MessageHandlerSpec, ProductFamilySpec, ResourceHandlerSpec, ToolProxyContent, ToolService,
};

/// The media type of a ToolProxy document.
pub const CONTENT_TYPE: &str = "application/vnd.ims.lti.v2.toolproxy+json";
/// The media type of the registration response.
pub const ID_CONTENT_TYPE: &str = "application/vnd.ims.lti.v2.toolproxy.id+json";
/// The least number of bytes of a (non-split) `shared_secret`.
pub const MIN_SHARED_SECRET_BYTES: usize = 32;
/// The most bytes of a `tp_half_shared_secret`.
pub const MAX_TP_HALF_BYTES: usize = 1024;

const SPLIT_SECRET: &str = "Security.splitSecret";
const OAUTH_SPLIT_SECRET: &str = "OAuth.splitSecret";

/// A ToolProxy document, read.
#[derive(Debug, Clone)]
pub struct ParsedToolProxy {
    /// The document as sent, without `security_contract.shared_secret` and
    /// `tp_half_shared_secret` (secrets are stored sealed, never in the document).
    pub doc: Value,
    /// The uuid of the profile it names in `tool_consumer_profile`, if any.
    pub tcp_uuid: Option<String>,
    /// Its vendor and product.
    pub product_family: ProductFamilySpec,
    /// What the store keeps.
    pub content: ToolProxyContent,
    /// `security_contract.shared_secret`.
    pub shared_secret: Option<String>,
    /// `security_contract.tp_half_shared_secret`.
    pub tp_half: Option<String>,
    /// Its security profile names and digest algorithms.
    pub security_profiles: Vec<(String, Vec<String>)>,
}

/// Why a ToolProxy cannot be registered. Rendered as 400 with Canvas's bodies.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolProxyError {
    /// The body is not a JSON object: `{"error":"Invalid request"}`.
    NotJson,
    /// A field the platform needs is missing or has the wrong type:
    /// `{"error":"Invalid request","message":…}`.
    Structure(String),
    /// The document asks for what the profile does not offer (Canvas `InvalidToolProxyError`).
    Invalid(ValidationErrors),
    /// The vendor code is blank, or it has developer keys and the registering key is not one
    /// of them: `{"error":"Developer key mismatch"}`.
    DeveloperKeyMismatch,
}

impl ToolProxyError {
    /// The JSON body of the 400 response.
    pub fn body(&self) -> Value {
        match self {
            ToolProxyError::NotJson => json!({"error": "Invalid request"}),
            ToolProxyError::Structure(m) => json!({"error": "Invalid request", "message": m}),
            ToolProxyError::Invalid(v) => v.body(),
            ToolProxyError::DeveloperKeyMismatch => json!({"error": "Developer key mismatch"}),
        }
    }
}

/// The failing categories of a validation, each a list (empty when it passed).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ValidationErrors {
    /// Capabilities (and parameter variables) the profile does not offer.
    pub invalid_capabilities: Vec<String>,
    /// Services not offered, or asked for with methods not offered: `{"id", "actions"}`.
    pub invalid_services: Vec<Value>,
    /// What is wrong with the security contract.
    pub invalid_security_contract: Vec<String>,
    /// Security profiles (or digest algorithms) not offered.
    pub invalid_security_profiles: Vec<String>,
    /// `["Security.splitSecret is required"]` when a JWT/OAuth 2 security profile is asked for
    /// without the split secret.
    pub restricted_security_profiles: Vec<String>,
}

impl ValidationErrors {
    fn is_empty(&self) -> bool {
        self.invalid_capabilities.is_empty()
            && self.invalid_services.is_empty()
            && self.invalid_security_contract.is_empty()
            && self.invalid_security_profiles.is_empty()
            && self.restricted_security_profiles.is_empty()
    }

    /// `{"error": "Invalid Capabilities, Invalid Services", "invalid_capabilities": […], …}`:
    /// one key per failing category, and all of them named in `error`.
    pub fn body(&self) -> Value {
        let mut body = Map::new();
        let mut names = Vec::new();
        let mut add = |key: &str, name: &str, v: Value, empty: bool| {
            if !empty {
                names.push(name.to_owned());
                body.insert(key.to_owned(), v);
            }
        };
        add(
            "invalid_capabilities",
            "Invalid Capabilities",
            json!(self.invalid_capabilities),
            self.invalid_capabilities.is_empty(),
        );
        add(
            "invalid_services",
            "Invalid Services",
            json!(self.invalid_services),
            self.invalid_services.is_empty(),
        );
        add(
            "invalid_security_contract",
            "Invalid SecurityContract",
            json!(self.invalid_security_contract),
            self.invalid_security_contract.is_empty(),
        );
        add(
            "invalid_security_profiles",
            "Invalid SecurityProfiles",
            json!(self.invalid_security_profiles),
            self.invalid_security_profiles.is_empty(),
        );
        add(
            "restricted_security_profiles",
            "Restricted SecurityProfiles",
            json!(self.restricted_security_profiles),
            self.restricted_security_profiles.is_empty(),
        );
        body.insert("error".into(), Value::String(names.join(", ")));
        Value::Object(body)
    }
}

fn structure(m: impl Into<String>) -> ToolProxyError {
    ToolProxyError::Structure(m.into())
}

/// `obj[key]` as an object, or None when absent or null; another type is an error.
fn object<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<&'a Map<String, Value>>, ToolProxyError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(m)) => Ok(Some(m)),
        Some(_) => Err(structure(format!("{path}{key} must be an object"))),
    }
}

fn string(
    obj: &Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Option<String>, ToolProxyError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(structure(format!("{path}{key} must be a string"))),
    }
}

/// A localised text (`{"default_value": …}`) or a plain string.
fn text(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>, ToolProxyError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(m)) => string(m, "default_value", &format!("{path}{key}.")),
        Some(_) => Err(structure(format!(
            "{path}{key} must be an object with default_value"
        ))),
    }
}

/// A list of strings; one string counts as a list of one.
fn strings(obj: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<String>, ToolProxyError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| structure(format!("{path}{key} must hold strings")))
            })
            .collect(),
        Some(_) => Err(structure(format!("{path}{key} must be a list of strings"))),
    }
}

fn objects<'a>(
    obj: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<Vec<&'a Map<String, Value>>, ToolProxyError> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(m)) => Ok(vec![m]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| {
                v.as_object()
                    .ok_or_else(|| structure(format!("{path}{key} must hold objects")))
            })
            .collect(),
        Some(_) => Err(structure(format!("{path}{key} must be a list of objects"))),
    }
}

/// The uuid of a profile URL: the segment after `tool_consumer_profile/` (Canvas
/// `ToolProxyService#tcp_uuid`).
pub fn tcp_uuid_from_url(url: &str) -> Option<String> {
    let (_, rest) = url.split_once("tool_consumer_profile/")?;
    let uuid = rest.split(['/', '?', '#']).next()?;
    (!uuid.is_empty()).then(|| uuid.to_owned())
}

/// Canvas's placement name for a `Canvas.placements.*` capability, e.g.
/// `Canvas.placements.similarityDetection` → `similarity_detection`.
fn placement(cap: &str) -> Option<String> {
    let name = cap.strip_prefix("Canvas.placements.")?;
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// Reads a ToolProxy document. Errors: [`ToolProxyError::NotJson`] for a body that is not a
/// JSON object; [`ToolProxyError::Structure`] naming the field for a missing `tool_profile`,
/// product family code or resource type code, a repeated resource type code, or a field of the
/// wrong type.
/// A code the platform keys records by (vendor, product and resource type codes) is at most
/// [`crate::store::MAX_IDENTIFIER_LEN`] characters, as in Canvas's `varchar(255)` columns.
fn identifier(value: &str, path: &str) -> Result<(), ToolProxyError> {
    crate::store::check_identifier(value).map_err(|e| structure(format!("{path} {e}")))
}

pub fn parse(body: &[u8]) -> Result<ParsedToolProxy, ToolProxyError> {
    let doc: Value = serde_json::from_slice(body).map_err(|_| ToolProxyError::NotJson)?;
    let root = doc.as_object().ok_or(ToolProxyError::NotJson)?;
    let tool_profile =
        object(root, "tool_profile", "")?.ok_or_else(|| structure("tool_profile is missing"))?;
    let instance = object(tool_profile, "product_instance", "tool_profile.")?
        .ok_or_else(|| structure("tool_profile.product_instance is missing"))?;
    let info = object(instance, "product_info", "tool_profile.product_instance.")?
        .ok_or_else(|| structure("tool_profile.product_instance.product_info is missing"))?;
    let p = "tool_profile.product_instance.product_info.";
    let family = object(info, "product_family", p)?
        .ok_or_else(|| structure(format!("{p}product_family is missing")))?;
    let fp = format!("{p}product_family.");
    let product_code = string(family, "code", &fp)?.unwrap_or_default();
    if product_code.trim().is_empty() {
        return Err(structure(format!("{fp}code is missing")));
    }
    identifier(&product_code, &format!("{fp}code"))?;
    let vendor = object(family, "vendor", &fp)?;
    let vp = format!("{fp}vendor.");
    let empty = Map::new();
    let vendor = vendor.unwrap_or(&empty);
    let contact = object(vendor, "contact", &vp)?;
    if let Some(code) = string(vendor, "code", &vp)? {
        identifier(&code, &format!("{vp}code"))?;
    }
    let product_family = ProductFamilySpec {
        vendor_code: string(vendor, "code", &vp)?.unwrap_or_default(),
        product_code,
        vendor_name: text(vendor, "vendor_name", &vp)?.unwrap_or_default(),
        vendor_description: text(vendor, "description", &vp)?,
        website: string(vendor, "website", &vp)?,
        vendor_email: match contact {
            Some(c) => string(c, "email", &format!("{vp}contact."))?,
            None => None,
        },
    };

    let base_url = {
        let choices = objects(tool_profile, "base_url_choice", "tool_profile.")?;
        let pick = choices
            .iter()
            .find(|c| {
                c.get("selector")
                    .and_then(|s| s.get("applies_to"))
                    .and_then(Value::as_array)
                    .is_some_and(|a| a.iter().any(|x| x == "MessageHandler"))
            })
            .or(choices.first());
        match pick {
            Some(c) => string(c, "secure_base_url", "tool_profile.base_url_choice.")?
                .or(string(
                    c,
                    "default_base_url",
                    "tool_profile.base_url_choice.",
                )?)
                .unwrap_or_default(),
            None => String::new(),
        }
    };

    let mut resource_handlers: Vec<ResourceHandlerSpec> = Vec::new();
    for (i, rh) in objects(tool_profile, "resource_handler", "tool_profile.")?
        .into_iter()
        .enumerate()
    {
        let rp = format!("tool_profile.resource_handler[{i}].");
        let code = match object(rh, "resource_type", &rp)? {
            Some(rt) => string(rt, "code", &format!("{rp}resource_type."))?,
            None => None,
        }
        .unwrap_or_default();
        if code.trim().is_empty() {
            return Err(structure(format!("{rp}resource_type.code is missing")));
        }
        identifier(&code, &format!("{rp}resource_type.code"))?;
        if resource_handlers
            .iter()
            .any(|r| r.resource_type_code == code)
        {
            return Err(structure(format!(
                "{rp}resource_type.code '{code}' is repeated"
            )));
        }
        let mut messages = Vec::new();
        for (j, m) in objects(rh, "message", &rp)?.into_iter().enumerate() {
            let mp = format!("{rp}message[{j}].");
            let message_type = string(m, "message_type", &mp)?
                .ok_or_else(|| structure(format!("{mp}message_type is missing")))?;
            let path = string(m, "path", &mp)?.unwrap_or_default();
            let launch_path = if path.starts_with("http://") || path.starts_with("https://") {
                path
            } else {
                format!("{base_url}{path}")
            };
            let capabilities = strings(m, "enabled_capability", &mp)?;
            let placements = capabilities.iter().filter_map(|c| placement(c)).collect();
            let parameters = Value::Array(
                objects(m, "parameter", &mp)?
                    .into_iter()
                    .map(|o| Value::Object(o.clone()))
                    .collect(),
            );
            messages.push(MessageHandlerSpec {
                message_type,
                launch_path,
                capabilities,
                parameters,
                placements,
            });
        }
        resource_handlers.push(ResourceHandlerSpec {
            resource_type_code: code,
            name: text(rh, "resource_name", &rp)?.unwrap_or_default(),
            description: text(rh, "description", &rp)?,
            messages,
        });
    }

    let mut security_profiles = Vec::new();
    for (i, sp) in objects(tool_profile, "security_profile", "tool_profile.")?
        .into_iter()
        .enumerate()
    {
        let sp_path = format!("tool_profile.security_profile[{i}].");
        let name = string(sp, "security_profile_name", &sp_path)?
            .ok_or_else(|| structure(format!("{sp_path}security_profile_name is missing")))?;
        security_profiles.push((name, strings(sp, "digest_algorithm", &sp_path)?));
    }

    let (shared_secret, tp_half, tool_service) = match object(root, "security_contract", "")? {
        Some(sc) => {
            let mut services = Vec::new();
            for (i, ts) in objects(sc, "tool_service", "security_contract.")?
                .into_iter()
                .enumerate()
            {
                let tp = format!("security_contract.tool_service[{i}].");
                let service = string(ts, "service", &tp)?
                    .ok_or_else(|| structure(format!("{tp}service is missing")))?;
                services.push(ToolService {
                    service,
                    action: strings(ts, "action", &tp)?,
                });
            }
            (
                string(sc, "shared_secret", "security_contract.")?.filter(|s| !s.is_empty()),
                string(sc, "tp_half_shared_secret", "security_contract.")?
                    .filter(|s| !s.is_empty()),
                services,
            )
        }
        None => (None, None, Vec::new()),
    };

    let tcp_uuid = string(root, "tool_consumer_profile", "")?
        .as_deref()
        .and_then(tcp_uuid_from_url);
    let mut doc = doc.clone();
    if let Some(sc) = doc
        .get_mut("security_contract")
        .and_then(Value::as_object_mut)
    {
        sc.remove("shared_secret");
        sc.remove("tp_half_shared_secret");
    }
    let content = ToolProxyContent {
        name: text(info, "product_name", p)?.unwrap_or_default(),
        description: text(info, "description", p)?,
        product_version: string(info, "product_version", p)?,
        lti_version: string(root, "lti_version", "")?.unwrap_or_else(|| "LTI-2p0".into()),
        enabled_capability: strings(root, "enabled_capability", "")?,
        tool_service,
        resource_handlers,
        raw_data: doc.to_string(),
    };
    Ok(ParsedToolProxy {
        doc,
        tcp_uuid,
        product_family,
        content,
        shared_secret,
        tp_half,
        security_profiles,
    })
}

impl ParsedToolProxy {
    /// Whether it enables a split secret (`Security.splitSecret`, or the deprecated
    /// `OAuth.splitSecret`).
    pub fn enables_split_secret(&self) -> bool {
        self.content
            .enabled_capability
            .iter()
            .any(|c| c == SPLIT_SECRET || c == OAUTH_SPLIT_SECRET)
    }

    /// Whether registration makes a split secret: a split-secret capability and a
    /// `tp_half_shared_secret`.
    pub fn uses_split_secret(&self) -> bool {
        self.enables_split_secret() && self.tp_half.is_some()
    }

    /// Checks the document against the profile in use; every failing category is reported.
    pub fn validate(&self, profile: &Profile) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::default();
        let mut bad_cap = |cap: &str| {
            if !profile.offers_capability(cap) && !e.invalid_capabilities.iter().any(|c| c == cap) {
                e.invalid_capabilities.push(cap.to_owned());
            }
        };
        for cap in &self.content.enabled_capability {
            if cap != OAUTH_SPLIT_SECRET {
                bad_cap(cap);
            }
        }
        for rh in &self.content.resource_handlers {
            for m in &rh.messages {
                // A message type is a capability the platform offers
                // (`basic-lti-launch-request`, …), as IMS's validator checks.
                bad_cap(&m.message_type);
                for cap in &m.capabilities {
                    bad_cap(cap);
                }
                for param in m.parameters.as_array().into_iter().flatten() {
                    if let Some(var) = param.get("variable").and_then(Value::as_str) {
                        bad_cap(var);
                    }
                }
            }
        }
        for ts in &self.content.tool_service {
            let id = service_id(&ts.service);
            match profile.services().find(|s| s.id == id) {
                None => e
                    .invalid_services
                    .push(json!({"id": ts.service, "actions": ts.action})),
                Some(def) => {
                    let missing: Vec<&String> = ts
                        .action
                        .iter()
                        .filter(|a| !def.actions.iter().any(|d| d.eq_ignore_ascii_case(a)))
                        .collect();
                    if !missing.is_empty() {
                        e.invalid_services
                            .push(json!({"id": ts.service, "actions": missing}));
                    }
                }
            }
        }
        match (&self.shared_secret, &self.tp_half) {
            (None, None) => e
                .invalid_security_contract
                .push("a shared_secret or a tp_half_shared_secret is required".into()),
            (None, Some(_)) if !self.enables_split_secret() => e.invalid_security_contract.push(
                "a tp_half_shared_secret needs Security.splitSecret in enabled_capability".into(),
            ),
            (Some(s), _) if !self.uses_split_secret() && s.len() < MIN_SHARED_SECRET_BYTES => {
                e.invalid_security_contract.push(format!(
                    "the shared_secret must be at least {MIN_SHARED_SECRET_BYTES} bytes"
                ))
            }
            _ => {}
        }
        if self
            .tp_half
            .as_ref()
            .is_some_and(|t| t.len() > MAX_TP_HALF_BYTES)
        {
            e.invalid_security_contract.push(format!(
                "the tp_half_shared_secret must be at most {MAX_TP_HALF_BYTES} bytes"
            ));
        }
        for (name, digests) in &self.security_profiles {
            let offered = SECURITY_PROFILES.iter().find(|(n, _)| n == name);
            let ok = offered.is_some_and(|(_, d)| digests.iter().all(|x| d.contains(&x.as_str())));
            if !ok && !e.invalid_security_profiles.contains(name) {
                e.invalid_security_profiles.push(name.clone());
            }
        }
        let wants_jwt = self
            .security_profiles
            .iter()
            .any(|(n, _)| n == "oauth2_access_token_ws_security" || n == "lti_jwt_ws_security");
        if wants_jwt && !self.enables_split_secret() {
            e.restricted_security_profiles
                .push("Security.splitSecret is required".into());
        }
        if e.is_empty() {
            Ok(())
        } else {
            Err(e)
        }
    }

    /// The shared secret registration stores and the `tc_half` to return: with a split
    /// secret, `tc_half` = 64 random bytes as 128 lowercase hex characters and the secret is
    /// `tc_half ‖ tp_half`; otherwise the contract's `shared_secret`. Call after
    /// [`validate`](Self::validate) passed.
    pub fn make_secret(&self) -> (Secret, Option<String>) {
        match (&self.tp_half, &self.shared_secret) {
            (Some(tp_half), _) if self.uses_split_secret() => {
                let tc_half = hex::encode(random_bytes(64));
                let secret = format!("{tc_half}{tp_half}");
                (Secret::new(secret.into_bytes()), Some(tc_half))
            }
            (_, Some(s)) => (Secret::new(s.clone().into_bytes()), None),
            _ => (Secret::new(Vec::new()), None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::DEFAULT_TCP_UUID;

    fn doc(extra_cap: Option<&str>) -> Value {
        let mut caps = vec!["basic-lti-launch-request"];
        caps.extend(extra_cap);
        json!({
            "@context": "http://purl.imsglobal.org/ctx/lti/v2/ToolProxy",
            "@type": "ToolProxy",
            "lti_version": "LTI-2p0",
            "tool_consumer_profile": "https://lms.example/api/lti/courses/1/tool_consumer_profile/abc-1",
            "tool_profile": {
                "lti_version": "LTI-2p0",
                "product_instance": {"product_info": {
                    "product_name": {"default_value": "Checker"},
                    "product_version": "1.0",
                    "product_family": {"code": "checker", "vendor": {"code": "acme.example", "vendor_name": {"default_value": "Acme"}}}
                }},
                "base_url_choice": [{"default_base_url": "https://tool.example", "selector": {"applies_to": ["MessageHandler"]}}],
                "resource_handler": [{
                    "resource_type": {"code": "originality_reports"},
                    "resource_name": {"default_value": "Reports"},
                    "message": [{"message_type": "basic-lti-launch-request", "path": "/launch",
                                 "enabled_capability": caps,
                                 "parameter": [{"name": "uid", "variable": "Canvas.user.id"}, {"name": "f", "fixed": "x"}]}]
                }],
                "security_profile": [{"security_profile_name": "lti_jwt_ws_security", "digest_algorithm": "HS256"}]
            },
            "enabled_capability": ["Security.splitSecret"],
            "security_contract": {
                "tp_half_shared_secret": "b".repeat(128),
                "tool_service": [{"@type": "RestServiceProfile", "service": "https://lms.example/api/lti/courses/1/tool_consumer_profile/abc-1#ToolProxy.collection", "action": ["POST"]}]
            }
        })
    }

    fn parse_value(v: &Value) -> ParsedToolProxy {
        parse(v.to_string().as_bytes()).unwrap()
    }

    #[test]
    fn reads_what_registration_needs() {
        let p = parse_value(&doc(Some("Canvas.placements.similarityDetection")));
        assert_eq!(p.tcp_uuid.as_deref(), Some("abc-1"));
        assert_eq!(p.product_family.vendor_code, "acme.example");
        assert_eq!(p.product_family.product_code, "checker");
        assert_eq!(p.content.name, "Checker");
        let m = &p.content.resource_handlers[0].messages[0];
        assert_eq!(m.launch_path, "https://tool.example/launch");
        assert_eq!(m.placements, vec!["similarity_detection".to_string()]);
        assert!(p.uses_split_secret());
        assert!(
            !p.content.raw_data.contains(&"b".repeat(128)),
            "no secret in the stored document"
        );
        assert!(p.doc["security_contract"]
            .get("tp_half_shared_secret")
            .is_none());
        let (secret, tc_half) = p.make_secret();
        let tc_half = tc_half.unwrap();
        assert_eq!(tc_half.len(), 128);
        assert!(tc_half
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        assert_eq!(
            secret.expose(),
            format!("{tc_half}{}", "b".repeat(128)).as_bytes()
        );
    }

    #[test]
    fn every_failing_category_is_reported() {
        let profile = Profile::choose(Some(DEFAULT_TCP_UUID), None);
        assert!(parse_value(&doc(None)).validate(&profile).is_ok());
        let e = parse_value(&doc(Some("extra_capability")))
            .validate(&profile)
            .unwrap_err();
        assert_eq!(
            e.body(),
            json!({"invalid_capabilities": ["extra_capability"], "error": "Invalid Capabilities"})
        );
        let mut v = doc(Some("Canvas.placements.similarityDetection"));
        v["enabled_capability"] = json!([]);
        v["security_contract"] = json!({"tool_service": [{"service": "vnd.Canvas.OriginalityReport", "action": ["GET"]}]});
        v["tool_profile"]["security_profile"] = json!([
            {"security_profile_name": "lti_jwt_ws_security", "digest_algorithm": "HS256"},
            {"security_profile_name": "made_up", "digest_algorithm": "HS256"}
        ]);
        let e = parse_value(&v).validate(&profile).unwrap_err();
        let body = e.body();
        assert_eq!(
            body["error"],
            "Invalid Capabilities, Invalid Services, Invalid SecurityContract, Invalid SecurityProfiles, Restricted SecurityProfiles"
        );
        assert_eq!(
            body["invalid_capabilities"],
            json!(["Canvas.placements.similarityDetection"])
        );
        assert_eq!(
            body["invalid_services"],
            json!([{"id": "vnd.Canvas.OriginalityReport", "actions": ["GET"]}])
        );
        assert_eq!(body["invalid_security_profiles"], json!(["made_up"]));
        assert_eq!(
            body["restricted_security_profiles"],
            json!(["Security.splitSecret is required"])
        );
    }

    #[test]
    fn structural_faults_name_the_field() {
        assert_eq!(parse(b"sad times").unwrap_err(), ToolProxyError::NotJson);
        assert_eq!(parse(b"[1]").unwrap_err(), ToolProxyError::NotJson);
        assert!(
            matches!(parse(b"{}").unwrap_err(), ToolProxyError::Structure(m) if m.contains("tool_profile"))
        );
        let mut v = doc(None);
        v["tool_profile"]["resource_handler"][0]["message"][0]["enabled_capability"] = json!([1]);
        assert!(
            matches!(parse(v.to_string().as_bytes()).unwrap_err(), ToolProxyError::Structure(m) if m.contains("enabled_capability"))
        );
        let mut v = doc(None);
        v["tool_profile"]["resource_handler"] = json!([
            v["tool_profile"]["resource_handler"][0],
            v["tool_profile"]["resource_handler"][0]
        ]);
        assert!(
            matches!(parse(v.to_string().as_bytes()).unwrap_err(), ToolProxyError::Structure(m) if m.contains("repeated"))
        );
    }

    #[test]
    fn short_or_missing_shared_secrets_are_refused() {
        let profile = Profile::choose(None, None);
        let mut v = doc(None);
        v["security_contract"]["tp_half_shared_secret"] = Value::Null;
        v["security_contract"]["shared_secret"] = json!("short");
        let e = parse_value(&v).validate(&profile).unwrap_err();
        assert_eq!(e.invalid_security_contract.len(), 1);
        v["security_contract"]["shared_secret"] = json!("s".repeat(32));
        assert!(parse_value(&v).validate(&profile).is_ok());
        let (secret, tc_half) = parse_value(&v).make_secret();
        assert!(tc_half.is_none());
        assert_eq!(secret.expose(), "s".repeat(32).as_bytes());
    }

    #[test]
    fn tcp_uuid_is_the_segment_after_the_profile() {
        assert_eq!(
            tcp_uuid_from_url("https://x/api/lti/accounts/1/tool_consumer_profile/u-1?x=1")
                .as_deref(),
            Some("u-1")
        );
        assert_eq!(
            tcp_uuid_from_url("https://x/api/lti/accounts/1/tool_consumer_profile"),
            None
        );
    }
}
