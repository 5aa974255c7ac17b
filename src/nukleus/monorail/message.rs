//! The MonoRail JSON messages: decode what a client sends, encode what the
//! server sends. Pure. Every message is a JSON object routed by its
//! `handler` property; there are no request ids (replies are not matched
//! to requests).

use serde_json::{json, Value};

use super::params::Params;
use crate::protocol::ErrorId;

/// What a client asks.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// `{"handler":"init"}`: wants its session id.
    Init,
    /// `{"handler":"authenticate","user":..,"secret":..}`.
    Authenticate {
        /// The user name, unchecked.
        user: String,
        /// The secret, if given.
        secret: Option<String>,
    },
    /// `{"handler":"query","params":{..}}`.
    Query(Params),
    /// `{"handler":"all"}`.
    All,
    /// `{"handler":"get","params":{..}}`: `params` names the id field.
    Get(Params),
    /// `{"handler":"watch","params":{..}}`.
    Watch(Params),
    /// `{"handler":"stop","params":{..}}`; no params: every watch.
    Stop(Option<Params>),
}

/// A client error: the id from the protocol's table, a message, and the
/// handler of the message that failed when it was known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MonorailError {
    /// The error id.
    pub id: ErrorId,
    /// A short human explanation.
    pub message: String,
    /// The `handler` of the failed message.
    pub handler: Option<String>,
}

impl MonorailError {
    /// An error with a message.
    pub fn new(id: ErrorId, message: impl Into<String>) -> Self {
        MonorailError {
            id,
            message: message.into(),
            handler: None,
        }
    }

    /// Names the handler of the failed message.
    pub fn during(mut self, handler: &str) -> Self {
        self.handler = Some(handler.chars().take(64).collect());
        self
    }
}

/// The HTTP-like status sent as `"code"` beside the error id.
pub const fn status(id: ErrorId) -> u16 {
    match id {
        ErrorId::InvalidUserName
        | ErrorId::InvalidPayload
        | ErrorId::InvalidChannelName
        | ErrorId::InvalidEventName
        | ErrorId::InvalidMessageFormat
        | ErrorId::UndefinedEvent
        | ErrorId::NotSubscribed => 400,
        ErrorId::UserNotFound | ErrorId::InvalidCredentials => 401,
        ErrorId::AccessDenied => 403,
        ErrorId::ChannelNotFound => 404,
        ErrorId::TooManySubscriptions | ErrorId::TooManyChannels => 429,
        ErrorId::AssignationFailed => 503,
        ErrorId::InternalError => 500,
    }
}

/// Decodes one client message.
pub fn decode(bytes: &[u8]) -> Result<Request, MonorailError> {
    let format = |why: &str| MonorailError::new(ErrorId::InvalidMessageFormat, why);
    let value: Value =
        serde_json::from_slice(bytes).map_err(|_| format("a message must be a JSON object"))?;
    let Value::Object(mut message) = value else {
        return Err(format("a message must be a JSON object"));
    };
    let Some(Value::String(handler)) = message.remove("handler") else {
        return Err(format("a message needs a \"handler\" string"));
    };
    let payload = |why: &str| MonorailError::new(ErrorId::InvalidPayload, why).during(&handler);
    let params = |required: bool| -> Result<Params, MonorailError> {
        let given = message.get("params");
        if required && given.is_none() {
            return Err(payload("\"params\" is required"));
        }
        Params::parse(given).map_err(|e| payload(&e.to_string()))
    };
    let request = match handler.as_str() {
        "init" => Request::Init,
        "all" => Request::All,
        "query" => Request::Query(params(true)?),
        "get" => Request::Get(params(true)?),
        "watch" => Request::Watch(params(false)?),
        "stop" => match message.get("params") {
            None => Request::Stop(None),
            Some(_) => Request::Stop(Some(params(true)?)),
        },
        "authenticate" => {
            let text = |key: &str| match message.get(key) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s.clone())),
                Some(_) => Err(payload(&format!("\"{key}\" must be a string"))),
            };
            Request::Authenticate {
                user: text("user")?.unwrap_or_default(),
                secret: text("secret")?,
            }
        }
        _ => {
            return Err(
                MonorailError::new(ErrorId::UndefinedEvent, "no such handler").during(&handler),
            )
        }
    };
    Ok(request)
}

/// `{"handler":"session","id":sid}`.
pub fn session(sid: &str) -> Vec<u8> {
    encode(json!({"handler": "session", "id": sid}))
}

/// `{"handler":"authenticated","user":name}`.
pub fn authenticated(user: &str) -> Vec<u8> {
    encode(json!({"handler": "authenticated", "user": user}))
}

/// `{"handler":"list","items":[..]}`.
pub fn list<'a>(items: impl Iterator<Item = &'a Value>) -> Vec<u8> {
    let items: Vec<&Value> = items.collect();
    encode(json!({"handler": "list", "items": items}))
}

/// `{"handler":"item","data":item}`.
pub fn item(data: &Value) -> Vec<u8> {
    encode(json!({"handler": "item", "data": data}))
}

/// `{"handler":"remove","params":params}`.
pub fn remove(params: &Value) -> Vec<u8> {
    encode(json!({"handler": "remove", "params": params}))
}

/// `{"handler":"error","error":{"id":..,"code":..,"message":..}}`, with
/// `"handler"` inside `error` naming the failed message's handler.
pub fn error(error: &MonorailError) -> Vec<u8> {
    let mut body = json!({
        "id": error.id.as_str(),
        "code": status(error.id),
        "message": error.message,
    });
    if let (Some(handler), Some(map)) = (&error.handler, body.as_object_mut()) {
        map.insert("handler".into(), Value::String(handler.clone()));
    }
    encode(json!({"handler": "error", "error": body}))
}

fn encode(value: Value) -> Vec<u8> {
    // Serializing a `Value` cannot fail.
    serde_json::to_vec(&value).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_seed_handlers() {
        assert_eq!(decode(br#"{"handler":"init"}"#), Ok(Request::Init));
        assert_eq!(decode(br#"{"handler":"all"}"#), Ok(Request::All));
        assert!(matches!(
            decode(br#"{"handler":"query","params":{"a":1}}"#),
            Ok(Request::Query(_))
        ));
        assert_eq!(decode(br#"{"handler":"stop"}"#), Ok(Request::Stop(None)));
        assert!(matches!(
            decode(br#"{"handler":"authenticate","user":"u","secret":"s"}"#),
            Ok(Request::Authenticate { .. })
        ));
    }

    #[test]
    fn bad_messages_get_their_error_ids() {
        let id = |bytes: &[u8]| decode(bytes).unwrap_err().id;
        assert_eq!(id(b"nope"), ErrorId::InvalidMessageFormat);
        assert_eq!(id(b"[1]"), ErrorId::InvalidMessageFormat);
        assert_eq!(id(br#"{"handler":1}"#), ErrorId::InvalidMessageFormat);
        assert_eq!(id(br#"{"handler":"fly"}"#), ErrorId::UndefinedEvent);
        assert_eq!(id(br#"{"handler":"query"}"#), ErrorId::InvalidPayload);
        assert_eq!(
            id(br#"{"handler":"get","params":[1]}"#),
            ErrorId::InvalidPayload
        );
        assert_eq!(
            id(br#"{"handler":"authenticate","user":3}"#),
            ErrorId::InvalidPayload
        );
    }

    #[test]
    fn errors_encode_with_id_code_and_message() {
        let e = MonorailError::new(ErrorId::UndefinedEvent, "no such handler").during("fly");
        let v: Value = serde_json::from_slice(&error(&e)).unwrap();
        assert_eq!(
            v,
            json!({"handler": "error", "error": {"id": "UNDEFINED_EVENT", "code": 400,
                   "message": "no such handler", "handler": "fly"}})
        );
    }
}
