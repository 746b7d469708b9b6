//! The IMS LTI 2.0 tool consumer profile (Canvas `Lti::ToolConsumerProfileCreator`): what the
//! platform offers a registering tool (capabilities, REST services, security profiles).
//!
//! The default profile offers what every tool may use. A custom profile
//! ([`ToolConsumerProfileRecord`]) belongs to one developer key and adds *restricted*
//! services and capabilities (the plagiarism-platform ones); it applies only when the
//! profile in use has the custom profile's uuid and the caller's token is that developer
//! key's (Canvas `ToolConsumerProfileController#show`).

use serde_json::{json, Value};

use crate::store::{AccountInfo, ContextRef, ToolConsumerProfileRecord};

/// The uuid of the default profile (Canvas's `DEFAULT_TCP_UUID`).
pub const DEFAULT_TCP_UUID: &str = "339b6700-e4cb-47c5-a54f-3ee0064921a9";

/// The media type of the document.
pub const CONTENT_TYPE: &str = "application/vnd.ims.lti.v2.toolconsumerprofile+json";

/// A REST service the platform offers (`service_offered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceDef {
    /// Its id, e.g. `vnd.Canvas.OriginalityReport`.
    pub id: &'static str,
    /// The endpoint path under the base URL. `{context_type}` and `{context_id}` are filled
    /// in for the context the profile is served for; other `{…}` stay as templates.
    pub template: &'static str,
    /// Media types.
    pub format: &'static [&'static str],
    /// HTTP methods.
    pub actions: &'static [&'static str],
    /// Offered only through a custom profile.
    pub restricted: bool,
}

const JSON: &[&str] = &["application/json"];
const TOOL_PROXY: &[&str] = &["application/vnd.ims.lti.v2.toolproxy+json"];

/// Every service lti2 can offer, default ones first.
pub const SERVICES: &[ServiceDef] = &[
    ServiceDef {
        id: "ToolProxy.collection",
        template: "api/lti/{context_type}s/{context_id}/tool_proxy",
        format: TOOL_PROXY,
        actions: &["POST"],
        restricted: false,
    },
    ServiceDef {
        id: "ToolProxy.item",
        template: "api/lti/tool_proxy/{tool_proxy_guid}",
        format: TOOL_PROXY,
        actions: &["GET"],
        restricted: false,
    },
    ServiceDef {
        id: "vnd.Canvas.authorization",
        template: "api/lti/{context_type}s/{context_id}/authorize",
        format: JSON,
        actions: &["POST"],
        restricted: false,
    },
    ServiceDef {
        id: "vnd.Canvas.OriginalityReport",
        template:
            "api/lti/assignments/{assignment_id}/submissions/{submission_id}/originality_report",
        format: JSON,
        actions: &["POST", "PUT", "GET"],
        restricted: true,
    },
    ServiceDef {
        id: "vnd.Canvas.webhooksSubscription",
        template: "api/lti/subscriptions",
        format: JSON,
        actions: &["POST", "GET", "PUT", "DELETE"],
        restricted: true,
    },
    ServiceDef {
        id: "vnd.Canvas.submission",
        template: "api/lti/assignments/{assignment_id}/submissions/{submission_id}",
        format: JSON,
        actions: &["GET"],
        restricted: true,
    },
    ServiceDef {
        id: "vnd.Canvas.submission.history",
        template: "api/lti/assignments/{assignment_id}/submissions/{submission_id}/history",
        format: JSON,
        actions: &["GET"],
        restricted: true,
    },
    ServiceDef {
        id: "vnd.Canvas.User",
        template: "api/lti/users/{user_id}",
        format: JSON,
        actions: &["GET"],
        restricted: true,
    },
    ServiceDef {
        id: "vnd.Canvas.GroupIndex",
        template: "api/lti/groups/{group_id}/users",
        format: JSON,
        actions: &["GET"],
        restricted: true,
    },
    ServiceDef {
        id: "vnd.Canvas.Assignment",
        template: "api/lti/assignments/{assignment_id}",
        format: JSON,
        actions: &["GET"],
        restricted: true,
    },
];

/// Capabilities every profile offers (Canvas's defaults and its variable expansions).
pub const DEFAULT_CAPABILITIES: &[&str] = &[
    "basic-lti-launch-request",
    "ToolProxyRegistrationRequest",
    "Canvas.placements.accountNavigation",
    "Canvas.placements.courseNavigation",
    "Canvas.placements.assignmentSelection",
    "Canvas.placements.linkSelection",
    "Canvas.placements.postGrades",
    "Security.splitSecret",
    "Context.sourcedId",
    // Variable expansions (IMS LTI 2.0 and Canvas's vnd names).
    "ToolConsumerProfile.url",
    "ToolProxy.custom.url",
    "ToolProxyBinding.custom.url",
    "LtiLink.custom.url",
    "Context.id",
    "Context.title",
    "Context.label",
    "Context.type",
    "Context.id.history",
    "CourseSection.sourcedId",
    "CourseSection.label",
    "CourseSection.title",
    "CourseOffering.sourcedId",
    "CourseOffering.label",
    "CourseOffering.title",
    "Membership.role",
    "Membership.role.lis",
    "Message.documentTarget",
    "Message.locale",
    "ResourceLink.id",
    "ResourceLink.title",
    "ResourceLink.description",
    "User.id",
    "User.image",
    "User.username",
    "User.scope.mentor",
    "Person.name.full",
    "Person.name.given",
    "Person.name.family",
    "Person.name.display",
    "Person.email.primary",
    "Person.sourcedId",
    "Person.address.timezone",
    "Canvas.api.domain",
    "Canvas.api.baseUrl",
    "Canvas.account.id",
    "Canvas.account.name",
    "Canvas.account.sisSourceId",
    "Canvas.rootAccount.id",
    "Canvas.rootAccount.sisSourceId",
    "Canvas.root_account.id",
    "Canvas.root_account.uuid",
    "Canvas.root_account.global_id",
    "Canvas.shard.id",
    "Canvas.course.id",
    "Canvas.course.uuid",
    "Canvas.course.name",
    "Canvas.course.sisSourceId",
    "Canvas.course.startAt",
    "Canvas.course.endAt",
    "Canvas.course.workflowState",
    "Canvas.term.startAt",
    "Canvas.term.name",
    "Canvas.assignment.id",
    "Canvas.assignment.title",
    "Canvas.assignment.description",
    "Canvas.assignment.pointsPossible",
    "Canvas.assignment.unlockAt",
    "Canvas.assignment.lockAt",
    "Canvas.assignment.dueAt",
    "Canvas.assignment.published",
    "Canvas.assignment.lockdownEnabled",
    "Canvas.assignment.allowedAttempts",
    "Canvas.assignment.submission.studentAttempts",
    "Canvas.user.id",
    "Canvas.user.globalId",
    "Canvas.user.loginId",
    "Canvas.user.sisSourceId",
    "Canvas.user.sisIntegrationId",
    "Canvas.user.prefersHighContrast",
    "Canvas.user.isRootAccountAdmin",
    "Canvas.membership.roles",
    "Canvas.membership.concludedRoles",
    "Canvas.group.contextIds",
    "Canvas.xapi.url",
    "Canvas.xuser.allRoles",
    "Canvas.enrollment.enrollmentState",
    "Canvas.file.media.id",
    "Canvas.file.media.type",
    "Canvas.file.media.duration",
    "Canvas.file.media.size",
    "Canvas.file.media.title",
    "Canvas.file.usageRights.name",
    "Canvas.file.usageRights.url",
    "Canvas.file.usageRights.copyrightText",
    "Canvas.externalTool.global_id",
    "Canvas.externalTool.url",
    "Canvas.css.common",
    "Canvas.masqueradingUser.id",
    "Canvas.masqueradingUser.userId",
    "Canvas.module.id",
    "Canvas.moduleItem.id",
    "com.instructure.contextLabel",
    "com.instructure.Assignment.lti.id",
    "com.instructure.Course.accept_canvas_resource_types",
    "com.instructure.Person.name_sortable",
    "com.instructure.Person.pronouns",
    "com.instructure.User.observees",
    "com.instructure.User.sectionNames",
    "com.instructure.Editor.contents",
    "com.instructure.Editor.selection",
    "com.instructure.PostMessageToken",
    "com.instructure.Group.id",
    "com.instructure.Group.name",
    "com.instructure.OriginalityReport.id",
    "com.instructure.Submission.id",
    "com.instructure.File.id",
    "com.instructure.RCS.app_host",
    "com.instructure.RCS.service_jwt",
    "vnd.Canvas.submission.url",
    "vnd.Canvas.submission.history.url",
    "vnd.Canvas.Person.email.sis",
];

/// The webhook capabilities (Canvas `Lti::ToolConsumerProfile::WEBHOOK_*`).
pub const WEBHOOK_CAPABILITIES: &[&str] = &[
    "vnd.instructure.webhooks.root_account.all",
    "vnd.instructure.webhooks.root_account.quiz_submitted",
    "vnd.instructure.webhooks.root_account.grade_change",
    "vnd.instructure.webhooks.root_account.attachment_created",
    "vnd.instructure.webhooks.root_account.submission_created",
    "vnd.instructure.webhooks.root_account.submission_updated",
    "vnd.instructure.webhooks.root_account.plagiarism_resubmit",
    "vnd.instructure.webhooks.assignment.quiz_submitted",
    "vnd.instructure.webhooks.assignment.attachment_created",
    "vnd.instructure.webhooks.assignment.submission_created",
    "vnd.instructure.webhooks.assignment.submission_updated",
    "vnd.instructure.webhooks.assignment.plagiarism_resubmit",
];

/// Capabilities offered only through a custom profile (besides the webhook ones).
pub const RESTRICTED_CAPABILITIES: &[&str] = &[
    "Canvas.placements.similarityDetection",
    "vnd.Canvas.OriginalityReport.url",
];

/// Whether `cap` is a restricted capability.
pub fn is_restricted_capability(cap: &str) -> bool {
    RESTRICTED_CAPABILITIES.contains(&cap) || WEBHOOK_CAPABILITIES.contains(&cap)
}

/// The restricted service ids.
pub fn restricted_services() -> impl Iterator<Item = &'static str> {
    SERVICES.iter().filter(|s| s.restricted).map(|s| s.id)
}

/// Every restricted capability.
pub fn restricted_capabilities() -> impl Iterator<Item = &'static str> {
    RESTRICTED_CAPABILITIES
        .iter()
        .chain(WEBHOOK_CAPABILITIES)
        .copied()
}

/// Security profiles offered: (name, digest algorithms).
pub const SECURITY_PROFILES: &[(&str, &[&str])] = &[
    ("lti_oauth_hash_message_security", &["HMAC-SHA1"]),
    ("oauth2_access_token_ws_security", &["HS256"]),
    ("lti_jwt_ws_security", &["HS256"]),
    ("lti_jwt_message_security", &["HS256"]),
];

/// The id a contract or profile names a service by: the text after the last `:` and then
/// after the last `#` (Canvas `ToolProxy#matches_service?`), so
/// `https://lms/…/tool_consumer_profile/U#vnd.Canvas.User` names `vnd.Canvas.User`.
pub fn service_id(s: &str) -> &str {
    let s = s.rsplit(':').next().unwrap_or(s);
    s.rsplit('#').next().unwrap_or(s)
}

/// The profile in use for one request: which uuid, and which custom profile (if any) adds
/// restricted items.
#[derive(Debug, Clone)]
pub struct Profile {
    /// The uuid in the profile's URL.
    pub uuid: String,
    /// The custom profile that applies (its uuid equals `uuid` and it belongs to the caller's
    /// developer key).
    pub custom: Option<ToolConsumerProfileRecord>,
}

impl Profile {
    /// Canvas's choice: the path uuid, else the developer key's custom profile uuid, else the
    /// default; the custom profile applies only when its uuid is the one in use.
    pub fn choose(path_uuid: Option<&str>, custom: Option<ToolConsumerProfileRecord>) -> Self {
        let uuid = path_uuid
            .map(str::to_owned)
            .or_else(|| custom.as_ref().map(|c| c.uuid.clone()))
            .unwrap_or_else(|| DEFAULT_TCP_UUID.to_owned());
        let custom = custom.filter(|c| c.uuid == uuid);
        Self { uuid, custom }
    }

    /// The capabilities offered.
    pub fn capabilities(&self) -> Vec<&str> {
        let mut caps: Vec<&str> = DEFAULT_CAPABILITIES.to_vec();
        if let Some(c) = &self.custom {
            for cap in &c.capabilities {
                if !caps.contains(&cap.as_str()) {
                    caps.push(cap);
                }
            }
        }
        caps
    }

    /// Whether `cap` is offered.
    pub fn offers_capability(&self, cap: &str) -> bool {
        DEFAULT_CAPABILITIES.contains(&cap)
            || self
                .custom
                .as_ref()
                .is_some_and(|c| c.capabilities.iter().any(|x| x == cap))
    }

    /// The services offered.
    pub fn services(&self) -> impl Iterator<Item = &'static ServiceDef> + '_ {
        SERVICES.iter().filter(|s| {
            !s.restricted
                || self
                    .custom
                    .as_ref()
                    .is_some_and(|c| c.services.iter().any(|x| x == s.id))
        })
    }

    /// The profile's URL for a context under a base URL.
    pub fn url(&self, base_url: &str, ctx: ContextRef) -> String {
        format!(
            "{base_url}/api/lti/{}/{}/tool_consumer_profile/{}",
            ctx.kind.plural(),
            ctx.id,
            self.uuid
        )
    }

    /// The ToolConsumerProfile JSON document for `ctx`, with endpoints under `base_url`
    /// (`scheme://host[:port]`, no trailing slash) and `root` as the product instance's
    /// service owner.
    pub fn document(&self, base_url: &str, ctx: ContextRef, root: &AccountInfo) -> Value {
        let url = self.url(base_url, ctx);
        let services: Vec<Value> = self
            .services()
            .map(|s| {
                let path = s
                    .template
                    .replace("{context_type}", ctx.kind.as_str())
                    .replace("{context_id}", &ctx.id.to_string());
                json!({
                    "@type": "RestService",
                    "@id": format!("{url}#{}", s.id),
                    "endpoint": format!("{base_url}/{path}"),
                    "format": s.format,
                    "action": s.actions,
                })
            })
            .collect();
        let security: Vec<Value> = SECURITY_PROFILES
            .iter()
            .map(|(name, digests)| {
                json!({"@type": "SecurityProfile", "security_profile_name": name, "digest_algorithm": digests})
            })
            .collect();
        json!({
            "@context": ["http://purl.imsglobal.org/ctx/lti/v2/ToolConsumerProfile"],
            "@type": "ToolConsumerProfile",
            "@id": url,
            "lti_version": "LTI-2p0",
            "guid": self.custom.as_ref().map(|c| c.uuid.as_str()).unwrap_or(DEFAULT_TCP_UUID),
            "product_instance": {
                "guid": root.uuid,
                "product_info": {
                    "product_name": {"default_value": "lti2-platform (Canvas-compatible)", "key": "product.name"},
                    "product_version": env!("CARGO_PKG_VERSION"),
                    "product_family": {
                        "code": "canvas",
                        "vendor": {
                            "code": "https://instructure.com",
                            "vendor_name": {"default_value": "Instructure", "key": "vendor.name"},
                            "timestamp": "2008-03-27T06:00:00Z",
                        },
                    },
                },
                "service_owner": {
                    "@id": "ServiceOwner",
                    "service_owner_name": {"default_value": root.name, "key": "service_owner.name"},
                    "description": {"default_value": root.name, "key": "service_owner.description"},
                },
            },
            "capability_offered": self.capabilities(),
            "service_offered": services,
            "security_profile": security,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ContextKind;

    fn custom(uuid: &str) -> ToolConsumerProfileRecord {
        ToolConsumerProfileRecord {
            uuid: uuid.into(),
            developer_key_id: 7,
            services: vec!["vnd.Canvas.OriginalityReport".into()],
            capabilities: vec!["vnd.Canvas.OriginalityReport.url".into()],
            created_at: 0,
        }
    }

    #[test]
    fn service_ids_are_read_after_the_last_colon_and_hash() {
        assert_eq!(
            service_id(
                "https://lms.example/api/lti/courses/1/tool_consumer_profile/u#vnd.Canvas.User"
            ),
            "vnd.Canvas.User"
        );
        assert_eq!(service_id("vnd.Canvas.Assignment"), "vnd.Canvas.Assignment");
        assert_eq!(
            service_id("tcp:ToolProxy.collection"),
            "ToolProxy.collection"
        );
    }

    #[test]
    fn custom_items_only_under_their_own_uuid() {
        let root = AccountInfo {
            id: 1,
            name: "Root".into(),
            uuid: "r".into(),
        };
        let ctx = ContextRef {
            kind: ContextKind::Course,
            id: 5,
        };
        let default = Profile::choose(Some("made-up"), None);
        let doc = default.document("https://lms.example", ctx, &root);
        assert_eq!(doc["guid"], DEFAULT_TCP_UUID);
        assert!(!doc.to_string().contains("OriginalityReport\""));
        assert!(!doc.to_string().contains("#vnd.Canvas.OriginalityReport"));

        let p = Profile::choose(None, Some(custom("c-1")));
        assert_eq!(p.uuid, "c-1");
        let doc = p.document("https://lms.example", ctx, &root);
        assert_eq!(doc["guid"], "c-1");
        let ids: Vec<&str> = doc["service_offered"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["@id"].as_str().unwrap())
            .collect();
        assert!(ids.contains(
            &"https://lms.example/api/lti/courses/5/tool_consumer_profile/c-1#vnd.Canvas.OriginalityReport"
        ));
        assert!(!ids.iter().any(|i| i.ends_with("#vnd.Canvas.User")));
        assert!(p.offers_capability("vnd.Canvas.OriginalityReport.url"));
        assert_eq!(
            doc["service_offered"][0]["endpoint"],
            "https://lms.example/api/lti/courses/5/tool_proxy"
        );

        let other = Profile::choose(Some(DEFAULT_TCP_UUID), Some(custom("c-1")));
        assert!(other.custom.is_none());
        assert!(!other.offers_capability("vnd.Canvas.OriginalityReport.url"));
    }
}
