//! The message catalogue, grouped by service. Each service is a marker type implementing
//! [`crate::rpc::Service`]; its requests are declared with [`crate::requests!`], one type each
//! with the type of its answer, and its events as an enum; every doc line names sender →
//! receiver. Bump [`crate::frame::PROTOCOL_VERSION`] on every change here.

pub mod admin;
pub mod auth;
pub mod control;
pub mod key;
pub mod queue;
pub mod setup;
pub mod store;
pub mod types;

/// Declares the requests of a service: one struct per request (its fields public), the
/// [`crate::rpc::Call`] impl naming its answer type — `Result<T, R>`, with `T` per request and
/// the refusal `R` shared by the service, so that any request can be refused alike — and the
/// enum that carries any of them on the wire (one variant per request, named as the struct, in
/// the order given: the order is the wire's).
///
/// ```
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug)]
/// pub enum Clock {}
/// impl ipc::Service for Clock {
///     const NAME: &'static str = "clock";
///     type Request = Request;
///     type Event = ();
/// }
///
/// ipc::requests! {
///     /// What the clock service answers.
///     pub enum Request for Clock, refused: String {
///         /// caller → clock: seconds since the epoch.
///         Now {} -> u64,
///         /// caller → clock: the time in `zone`, as text.
///         Format { zone: String } -> String,
///     }
/// }
///
/// use ipc::rpc::{Call, Named};
/// assert_eq!(Format::NAME, "Format");
/// assert_eq!(Request::from(Now {}).name(), "Now");
/// ```
#[macro_export]
macro_rules! requests {
    (
        $(#[$enum_meta:meta])*
        pub enum $Request:ident for $Service:ty, refused: $Refused:ty {
            $(
                $(#[$meta:meta])*
                $Name:ident {
                    $( $(#[$field_meta:meta])* $field:ident : $field_ty:ty ),* $(,)?
                } -> $Answer:ty
            ),* $(,)?
        }
    ) => {
        $(
            $(#[$meta])*
            #[derive(Debug, Clone, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
            pub struct $Name {
                $( $(#[$field_meta])* pub $field: $field_ty, )*
            }

            impl $crate::rpc::Call for $Name {
                type Service = $Service;
                type Answer = Result<$Answer, $Refused>;
                const NAME: &'static str = stringify!($Name);
            }

            impl From<$Name> for $Request {
                fn from(request: $Name) -> $Request {
                    $Request::$Name(request)
                }
            }
        )*

        $(#[$enum_meta])*
        #[derive(Debug, Clone, PartialEq, Eq, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $Request {
            $( $Name($Name), )*
        }

        impl $Request {
            /// `refused` as the answer to this request, whichever it is (a request the
            /// caller's link may not make, say).
            pub fn refuse(&self, refused: $Refused) -> $crate::rpc::Answer<$Service> {
                match self {
                    $( $Request::$Name(_) => {
                        <$Name as $crate::rpc::Call>::reply(&Err(refused), Vec::new())
                    } )*
                }
            }
        }

        impl $crate::rpc::Named for $Request {
            fn name(&self) -> &'static str {
                match self {
                    $( $Request::$Name(_) => stringify!($Name), )*
                }
            }
        }
    };
}
