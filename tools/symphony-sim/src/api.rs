//! Wire types, named and shaped as in the Symphony OpenAPI specs (pod 20.17, agent 25.8,
//! login 20.14), and their construction from the generated data.

use serde::Serialize;

use crate::data::{Dataset, Member, POD_COMPANY, POD_COMPANY_ID, payload_id};

/// `Error` (pod, login) / `V2Error` (agent): `{"code": 401, "message": "Invalid session"}`.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    pub code: u16,
    pub message: String,
}

/// Login `Token`.
#[derive(Debug, Serialize)]
pub(crate) struct Token {
    pub name: &'static str,
    pub token: String,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2AdminStreamList {
    pub count: u64,
    pub skip: u64,
    pub limit: u64,
    pub filter: serde_json::Value,
    pub streams: Vec<V2AdminStreamInfo>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2AdminStreamInfo {
    pub id: String,
    pub is_external: bool,
    pub is_active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub is_public: Option<bool>,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub cross_pod: bool,
    pub origin: &'static str,
    pub attributes: V2AdminStreamAttributes,
}

/// `V2StreamAttributes` (`GET /pod/v2/streams/{sid}/info`).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2StreamAttributes {
    pub id: String,
    pub cross_pod: bool,
    pub origin: &'static str,
    pub active: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message_date: Option<i64>,
    pub stream_type: V2StreamType,
    /// IMs, MIMs and walls: `{"members": [...]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_attributes: Option<serde_json::Value>,
    /// Rooms: `{"name": ...}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_attributes: Option<serde_json::Value>,
}

/// `V2StreamType`.
#[derive(Debug, Serialize)]
pub(crate) struct V2StreamType {
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2AdminStreamAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub members: Option<Vec<i64>>,
    pub created_by_user_id: i64,
    pub created_date: i64,
    pub last_modified_date: i64,
    pub origin_company: String,
    pub origin_company_id: i64,
    pub members_count: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_message_date: Option<i64>,
    pub group_chat: bool,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2MembershipList {
    pub count: u64,
    pub skip: u64,
    pub limit: u64,
    pub members: Vec<V2MemberInfo>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2MemberInfo {
    pub user: V2MemberUserDetail,
    pub is_owner: bool,
    pub is_creator: bool,
    pub join_date: i64,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V2MemberUserDetail {
    pub user_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub display_name: String,
    pub company: String,
    pub company_id: i64,
    pub is_external: bool,
}

/// `MemberInfo` of the room membership list.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MemberInfo {
    pub id: i64,
    pub owner: bool,
    pub join_date: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct V2UserList {
    pub users: Vec<UserV2>,
    pub errors: Vec<UserError>,
}

#[derive(Debug, Serialize)]
pub(crate) struct UserError {
    pub error: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Avatar {
    pub size: &'static str,
    pub url: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct UserV2 {
    pub id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    pub company: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    pub account_type: &'static str,
    pub avatars: Vec<Avatar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4User {
    pub user_id: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_name: Option<String>,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4Stream {
    pub stream_id: String,
    pub stream_type: &'static str,
}

#[derive(Debug, Serialize)]
pub(crate) struct V4ThumbnailInfo {
    pub id: String,
    pub dimension: String,
}

#[derive(Debug, Serialize)]
pub(crate) struct V4AttachmentInfo {
    pub id: String,
    pub name: String,
    pub size: u64,
    pub images: Vec<V4ThumbnailInfo>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4Message {
    pub message_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_message_id: Option<String>,
    pub timestamp: i64,
    pub message: String,
    pub data: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<V4AttachmentInfo>,
    pub user: V4User,
    pub stream: V4Stream,
    pub user_agent: &'static str,
    pub original_format: &'static str,
    pub sid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replacing: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replaced_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_timestamp: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_message_id: Option<String>,
    /// The message a wall post shares.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_message: Option<Box<V4Message>>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4MessageSuppressed {
    pub message_id: String,
    pub stream: V4Stream,
}

#[derive(Debug, Serialize)]
pub(crate) struct V4MessageSent {
    pub message: V4Message,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4SharedPost {
    pub message: V4Message,
    pub shared_message: V4Message,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4RoomMembership {
    pub stream: V4Stream,
    pub affected_user: V4User,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4RoomProperties {
    pub name: Option<String>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4RoomUpdated {
    pub stream: V4Stream,
    pub new_room_properties: V4RoomProperties,
}

/// `V4Payload`: one field set, after the event's type.
#[derive(Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4Payload {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_sent: Option<V4MessageSent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shared_post: Option<V4SharedPost>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_suppressed: Option<V4MessageSuppressed>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_joined_room: Option<V4RoomMembership>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_left_room: Option<V4RoomMembership>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub room_updated: Option<V4RoomUpdated>,
}

#[derive(Debug, Serialize)]
pub(crate) struct V4Initiator {
    pub user: V4User,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V4Event {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub timestamp: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub initiator: V4Initiator,
    pub payload: V4Payload,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct V5EventList {
    pub events: Vec<V4Event>,
    pub ack_id: String,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct V5Datafeed {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct MessageSuppressionResponse {
    pub message_id: String,
    pub suppressed: bool,
    pub suppression_date: i64,
}

/// `RoomDetail`, the answer of `POST /pod/v1/admin/room/{id}/setActive`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomDetail {
    pub room_attributes: RoomAttributes,
    pub room_system_info: RoomSystemInfo,
    pub immutable_room_attributes: ImmutableRoomAttributes,
}

/// `RoomAttributes`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub members_can_invite: bool,
    pub discoverable: bool,
}

/// `RoomSystemInfo`: `active` false means no message can be sent and membership is locked.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RoomSystemInfo {
    pub id: String,
    pub creation_date: i64,
    pub created_by_user_id: i64,
    pub active: bool,
}

/// `ImmutableRoomAttributes`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ImmutableRoomAttributes {
    pub public: bool,
    pub read_only: bool,
    pub copy_protected: bool,
}

const AVATAR_ORIGINAL: &str = "../avatars/static/150/default.png";
const AVATAR_SMALL: &str = "../avatars/static/50/default.png";

/// What an entry of the event log reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogKind {
    /// A message was sent (`MESSAGESENT`, or `SHAREDPOST` for a wall post sharing one).
    Sent(usize),
    /// A message was suppressed (`MESSAGESUPPRESSED`).
    Suppressed(usize),
    /// A user joined a room (`USERJOINEDROOM`): stream, user.
    Joined(usize, usize),
    /// A user left a room (`USERLEFTROOM`): stream, user.
    Left(usize, usize),
    /// A room's properties changed (`ROOMUPDATED`).
    RoomUpdated(usize),
}

impl LogKind {
    /// The stream the event happened in.
    pub(crate) fn stream(self, ds: &Dataset) -> usize {
        match self {
            LogKind::Sent(m) | LogKind::Suppressed(m) => ds.messages[m].stream,
            LogKind::Joined(s, _) | LogKind::Left(s, _) | LogKind::RoomUpdated(s) => s,
        }
    }

    /// The event type's wire name.
    pub(crate) fn wire_name(self, ds: &Dataset) -> &'static str {
        match self {
            LogKind::Sent(m) if ds.messages[m].shares.is_some() => "SHAREDPOST",
            LogKind::Sent(_) => "MESSAGESENT",
            LogKind::Suppressed(_) => "MESSAGESUPPRESSED",
            LogKind::Joined(..) => "USERJOINEDROOM",
            LogKind::Left(..) => "USERLEFTROOM",
            LogKind::RoomUpdated(_) => "ROOMUPDATED",
        }
    }
}

/// An entry of the event log the datahose and datafeeds read.
#[derive(Debug, Clone)]
pub(crate) struct LogEvent {
    pub id: String,
    pub kind: LogKind,
    pub at: i64,
    pub initiator: usize,
}

impl Dataset {
    pub(crate) fn v4_user(&self, u: usize) -> V4User {
        let u = &self.users[u];
        V4User {
            user_id: u.id,
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            display_name: u.display_name.clone(),
            email: u.email.clone(),
            username: if u.external { None } else { u.username.clone() },
        }
    }

    pub(crate) fn v4_stream(&self, s: usize) -> V4Stream {
        V4Stream {
            stream_id: payload_id(&self.streams[s].id),
            stream_type: self.streams[s].kind.as_str(),
        }
    }

    pub(crate) fn user_v2(&self, u: usize) -> UserV2 {
        let u = &self.users[u];
        UserV2 {
            id: u.id,
            email_address: u.email.clone(),
            first_name: u.first_name.clone(),
            last_name: u.last_name.clone(),
            display_name: u.display_name.clone(),
            title: u.title.clone(),
            company: u.company.clone(),
            username: u.username.clone(),
            location: u.location.clone(),
            account_type: u.account_type,
            avatars: vec![
                Avatar {
                    size: "original",
                    url: AVATAR_ORIGINAL,
                },
                Avatar {
                    size: "small",
                    url: AVATAR_SMALL,
                },
            ],
            department: u.department.clone(),
        }
    }

    pub(crate) fn member_info(&self, m: &Member) -> V2MemberInfo {
        let u = &self.users[m.user];
        V2MemberInfo {
            user: V2MemberUserDetail {
                user_id: u.id,
                email: u.email.clone(),
                first_name: u.first_name.clone(),
                last_name: u.last_name.clone(),
                display_name: u.display_name.clone(),
                company: u.company.clone(),
                company_id: u.company_id,
                is_external: u.external,
            },
            is_owner: m.owner,
            is_creator: m.creator,
            join_date: m.joined,
        }
    }

    /// A stream as `GET /pod/v2/streams/{sid}/info` shows it to a member: the current
    /// members (IM, MIM, wall) or the room's name, no creator.
    pub(crate) fn stream_attributes(&self, si: usize) -> V2StreamAttributes {
        let admin = self.admin_stream_info(si);
        let s = &self.streams[si];
        let is_room = s.kind == crate::StreamType::Room;
        V2StreamAttributes {
            id: admin.id,
            cross_pod: admin.cross_pod,
            origin: admin.origin,
            active: s.active,
            last_message_date: s.last_message,
            stream_type: V2StreamType {
                kind: s.kind.as_str(),
            },
            stream_attributes: admin
                .attributes
                .members
                .map(|members| serde_json::json!({ "members": members })),
            room_attributes: is_room.then(|| serde_json::json!({ "name": s.name })),
        }
    }

    /// A room as `setActive` answers it, with its activity `active`.
    pub(crate) fn room_detail(&self, si: usize, active: bool) -> RoomDetail {
        let s = &self.streams[si];
        RoomDetail {
            room_attributes: RoomAttributes {
                name: s.name.clone(),
                description: s.description.clone(),
                members_can_invite: true,
                discoverable: s.public,
            },
            room_system_info: RoomSystemInfo {
                id: payload_id(&s.id),
                creation_date: s.created,
                created_by_user_id: self.users[s.creator].id,
                active,
            },
            immutable_room_attributes: ImmutableRoomAttributes {
                public: s.public,
                read_only: false,
                copy_protected: false,
            },
        }
    }

    pub(crate) fn admin_stream_info(&self, si: usize) -> V2AdminStreamInfo {
        let s = &self.streams[si];
        let creator = &self.users[s.creator];
        let current: Vec<i64> = s
            .members
            .iter()
            .filter(|m| m.left.is_none())
            .map(|m| self.users[m.user].id)
            .collect();
        let is_room = s.kind == crate::StreamType::Room;
        V2AdminStreamInfo {
            id: payload_id(&s.id),
            is_external: s.external,
            is_active: s.active,
            is_public: is_room.then_some(s.public),
            kind: s.kind.as_str(),
            cross_pod: s.external,
            origin: if creator.external {
                "EXTERNAL"
            } else {
                "INTERNAL"
            },
            attributes: V2AdminStreamAttributes {
                room_name: s.name.clone(),
                room_description: s.description.clone(),
                members_count: current.len() as u64,
                members: (!is_room).then_some(current),
                created_by_user_id: creator.id,
                created_date: s.created,
                last_modified_date: s.last_modified,
                origin_company: if creator.external {
                    creator.company.clone()
                } else {
                    POD_COMPANY.to_string()
                },
                origin_company_id: if creator.external {
                    creator.company_id
                } else {
                    POD_COMPANY_ID
                },
                last_message_date: s.last_message,
                group_chat: false,
            },
        }
    }

    pub(crate) fn v4_message(&self, mi: usize) -> V4Message {
        let m = &self.messages[mi];
        let id = |i: Option<usize>| i.map(|i| payload_id(&self.messages[i].id));
        V4Message {
            message_id: payload_id(&m.id),
            parent_message_id: id(m.parent.map(|p| p.0)),
            timestamp: m.ts,
            message: m.rendered.presentation.clone(),
            data: m.rendered.data.clone(),
            attachments: m
                .attachments
                .iter()
                .map(|a| V4AttachmentInfo {
                    id: a.file.listed_id.clone(),
                    name: a.name.clone(),
                    size: a.file.size,
                    images: a
                        .thumbnails
                        .iter()
                        .map(|t| V4ThumbnailInfo {
                            id: t.listed_id.clone(),
                            dimension: "600".into(),
                        })
                        .collect(),
                })
                .collect(),
            user: self.v4_user(m.sender),
            stream: self.v4_stream(m.stream),
            user_agent: m.user_agent,
            original_format: "com.symphony.messageml.v2",
            sid: m.sid.clone(),
            replacing: id(m.replacing),
            replaced_by: id(m.replaced_by),
            initial_timestamp: m.initial.map(|i| self.messages[i].ts),
            initial_message_id: id(m.initial),
            shared_message: m.shares.map(|s| Box::new(self.v4_message(s))),
        }
    }

    pub(crate) fn v4_event(&self, e: &LogEvent) -> V4Event {
        let mut payload = V4Payload::default();
        let mut message_id = None;
        match e.kind {
            LogKind::Sent(mi) => {
                message_id = Some(payload_id(&self.messages[mi].id));
                let message = self.v4_message(mi);
                match self.messages[mi].shares {
                    Some(shared) => {
                        payload.shared_post = Some(V4SharedPost {
                            message,
                            shared_message: self.v4_message(shared),
                        })
                    }
                    None => payload.message_sent = Some(V4MessageSent { message }),
                }
            }
            LogKind::Suppressed(mi) => {
                let m = &self.messages[mi];
                message_id = Some(payload_id(&m.id));
                payload.message_suppressed = Some(V4MessageSuppressed {
                    message_id: payload_id(&m.id),
                    stream: self.v4_stream(m.stream),
                });
            }
            LogKind::Joined(si, u) | LogKind::Left(si, u) => {
                let change = V4RoomMembership {
                    stream: self.v4_stream(si),
                    affected_user: self.v4_user(u),
                };
                if matches!(e.kind, LogKind::Joined(..)) {
                    payload.user_joined_room = Some(change);
                } else {
                    payload.user_left_room = Some(change);
                }
            }
            LogKind::RoomUpdated(si) => {
                payload.room_updated = Some(V4RoomUpdated {
                    stream: self.v4_stream(si),
                    new_room_properties: V4RoomProperties {
                        name: self.streams[si].name.clone(),
                    },
                })
            }
        }
        V4Event {
            id: e.id.clone(),
            message_id,
            timestamp: e.at,
            kind: e.kind.wire_name(self),
            initiator: V4Initiator {
                user: self.v4_user(e.initiator),
            },
            payload,
        }
    }

    /// What the datahose holds when it has been read since the pod started: every
    /// message as sent, and each room's later joins, leaves and one update, in time order.
    pub(crate) fn history(&self) -> Vec<LogEvent> {
        let mut log = Vec::new();
        for (mi, m) in self.messages.iter().enumerate() {
            log.push(LogEvent {
                id: format!("sent-{}", m.id),
                kind: LogKind::Sent(mi),
                at: m.ts,
                initiator: m.sender,
            });
        }
        for (si, s) in self.streams.iter().enumerate() {
            if s.kind != crate::StreamType::Room {
                continue;
            }
            log.push(LogEvent {
                id: format!("upd-{}", s.id),
                kind: LogKind::RoomUpdated(si),
                at: s.created + 1,
                initiator: s.creator,
            });
            for m in &s.members {
                if m.joined > s.created {
                    log.push(LogEvent {
                        id: format!("join-{}-{}", s.id, self.users[m.user].id),
                        kind: LogKind::Joined(si, m.user),
                        at: m.joined,
                        initiator: m.user,
                    });
                }
                if let Some(left) = m.left {
                    log.push(LogEvent {
                        id: format!("left-{}-{}", s.id, self.users[m.user].id),
                        kind: LogKind::Left(si, m.user),
                        at: left,
                        initiator: m.user,
                    });
                }
            }
        }
        log.sort_by(|a, b| (a.at, &a.id).cmp(&(b.at, &b.id)));
        log
    }
}
