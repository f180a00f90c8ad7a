//! Kling's JSON read straight into the handful of fields we use.
//!
//! A list page holds up to 500 task objects and a sweep asks for one every
//! few milliseconds while a wave of tasks ends: building each answer as a
//! `serde_json::Value` (a map per object, a string per key, all dropped
//! again) was a fifth of a run's CPU. These readers visit the JSON once,
//! keep only the fields below and skip the rest unbuilt.
//!
//! They never fail on a field's *shape*, only on text that is not JSON: a
//! scalar we read as text takes a string or a number's digits and reads
//! anything else as absent; an object we look into reads any other value as
//! "not an object"; a repeated key keeps its last value — what reading
//! through `Value` did, so one odd field still never loses a whole task.

use std::fmt;
use std::marker::PhantomData;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

/// A scalar as text: a JSON string, or a number's digits (an 18-digit id
/// sent as a number keeps every digit). `None` for null, booleans, arrays
/// and objects.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Text(pub Option<String>);

/// An object read field by field into `T`; any other value reads as `None`.
#[derive(Debug, Clone, PartialEq)]
pub struct Obj<T>(pub Option<T>);

impl<T> Default for Obj<T> {
    fn default() -> Self {
        Obj(None)
    }
}

/// The objects of an array that are objects; anything but an array reads
/// as none at all.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Objects<T>(pub Vec<T>);

/// A struct whose fields a [`Obj`] fills as it meets their keys.
pub trait Fields<'de>: Default {
    /// The keys this struct reads (an enum with an `Other` for the rest).
    type Key: Deserialize<'de>;
    /// Read the value of `key` (skip it when it is not one of ours).
    fn read<A: MapAccess<'de>>(&mut self, key: Self::Key, map: &mut A) -> Result<(), A::Error>;
}

/// `Fields` for a struct whose every field is read by the key of its name:
/// `read_fields!(Task { task_id, task_status })`.
macro_rules! read_fields {
    ($name:ident { $($field:ident),* $(,)? }) => {
        const _: () = {
            #[derive(serde::Deserialize)]
            #[serde(field_identifier)]
            #[allow(non_camel_case_types)]
            pub enum Key {
                $($field,)*
                #[serde(other)]
                __other,
            }
            impl<'de> $crate::provider::kling::wire::loose::Fields<'de> for $name {
                type Key = Key;
                fn read<A: serde::de::MapAccess<'de>>(
                    &mut self,
                    key: Key,
                    map: &mut A,
                ) -> Result<(), A::Error> {
                    match key {
                        $(Key::$field => self.$field = map.next_value()?,)*
                        Key::__other => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                    Ok(())
                }
            }
        };
    };
}
pub(crate) use read_fields;

/// Consume a whole array unbuilt.
fn drain_seq<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Consume a whole object unbuilt.
fn drain_map<'de, A: MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// The visits of a string, a number or a boolean, each reading as `$value`
/// (`$out`: the visitor's `Value`).
macro_rules! scalars_read_as {
    ($out:ty, $value:expr) => {
        fn visit_str<E: de::Error>(self, _: &str) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<$out, E> {
            Ok($value)
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<$out, E> {
            Ok($value)
        }
    };
}

impl<'de> Deserialize<'de> for Text {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<Text, E> {
        Ok(Text(Some(s.to_owned())))
    }
    fn visit_string<E: de::Error>(self, s: String) -> Result<Text, E> {
        Ok(Text(Some(s)))
    }
    fn visit_i64<E: de::Error>(self, n: i64) -> Result<Text, E> {
        Ok(Text(Some(n.to_string())))
    }
    fn visit_u64<E: de::Error>(self, n: u64) -> Result<Text, E> {
        Ok(Text(Some(n.to_string())))
    }
    fn visit_f64<E: de::Error>(self, n: f64) -> Result<Text, E> {
        // As serde_json writes the number (`5.042`, `2.5`).
        Ok(Text(serde_json::Number::from_f64(n).map(|n| n.to_string())))
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Text, E> {
        Ok(Text(None))
    }
    fn visit_unit<E: de::Error>(self) -> Result<Text, E> {
        Ok(Text(None))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Text, A::Error> {
        drain_seq(seq).map(|()| Text(None))
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Text, A::Error> {
        drain_map(map).map(|()| Text(None))
    }
}

impl<'de, T: Fields<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ObjVisitor(PhantomData))
    }
}

struct ObjVisitor<T>(PhantomData<T>);

impl<'de, T: Fields<'de>> Visitor<'de> for ObjVisitor<T> {
    type Value = Obj<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Obj<T>, A::Error> {
        let mut t = T::default();
        while let Some(key) = map.next_key::<T::Key>()? {
            t.read(key, &mut map)?;
        }
        Ok(Obj(Some(t)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Obj<T>, A::Error> {
        drain_seq(seq).map(|()| Obj(None))
    }
    scalars_read_as!(Obj<T>, Obj(None));
    fn visit_unit<E: de::Error>(self) -> Result<Obj<T>, E> {
        Ok(Obj(None))
    }
}

impl<'de, T: Fields<'de>> Deserialize<'de> for Objects<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Objects(match MaybeData::<T>::deserialize(d)?.0 {
            Some(Data::Array(items)) => items.into_iter().flatten().collect(),
            _ => Vec::new(),
        }))
    }
}

/// What an envelope's `data` held.
#[derive(Debug, Clone, PartialEq)]
pub enum Data<T> {
    /// An object (a task, or a create's answer).
    Object(T),
    /// An array (a list page): `None` for each entry that is not an object.
    Array(Vec<Option<T>>),
    /// A string, number or boolean.
    Scalar,
}

/// `data`, with `null` read as absent.
#[derive(Debug, Clone, PartialEq)]
pub struct MaybeData<T>(pub Option<Data<T>>);

impl<T> Default for MaybeData<T> {
    fn default() -> Self {
        MaybeData(None)
    }
}

impl<'de, T: Fields<'de>> Deserialize<'de> for MaybeData<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(DataVisitor(PhantomData))
    }
}

struct DataVisitor<T>(PhantomData<T>);

impl<'de, T: Fields<'de>> Visitor<'de> for DataVisitor<T> {
    type Value = MaybeData<T>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<MaybeData<T>, A::Error> {
        let Obj(t) = ObjVisitor::<T>(PhantomData).visit_map(map)?;
        Ok(MaybeData(t.map(Data::Object)))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeData<T>, A::Error> {
        let mut out = Vec::new();
        while let Some(Obj(one)) = seq.next_element::<Obj<T>>()? {
            out.push(one);
        }
        Ok(MaybeData(Some(Data::Array(out))))
    }
    scalars_read_as!(MaybeData<T>, MaybeData(Some(Data::Scalar)));
    fn visit_unit<E: de::Error>(self) -> Result<MaybeData<T>, E> {
        Ok(MaybeData(None))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Default, PartialEq)]
    struct Pair {
        a: Text,
        b: Objects<Pair>,
    }

    read_fields!(Pair { a, b });

    fn pair(json: &str) -> Obj<Pair> {
        serde_json::from_str(json).expect("JSON")
    }

    #[test]
    fn text_takes_strings_and_numbers_and_reads_the_rest_as_absent() {
        for (json, text) in [
            (r#""x""#, Some("x")),
            (r#""a\"b""#, Some("a\"b")),
            ("866889456698785798", Some("866889456698785798")),
            ("-3", Some("-3")),
            ("5.042", Some("5.042")),
            ("2.5", Some("2.5")),
            ("null", None),
            ("true", None),
            (r#"[1,{"a":2}]"#, None),
            (r#"{"a":[1]}"#, None),
        ] {
            let t: Text = serde_json::from_str(json).expect("JSON");
            assert_eq!(t.0.as_deref(), text, "{json}");
        }
    }

    #[test]
    fn an_odd_field_is_skipped_and_the_object_still_reads() {
        let p =
            pair(r#"{"a":{"deep":[1,2,{"x":null}]},"zz":[[]],"b":[{"a":1},7,"s",{"a":"two"}]}"#);
        let p = p.0.expect("an object");
        assert_eq!(p.a, Text(None));
        let inner: Vec<_> = p.b.0.iter().map(|q| q.a.0.clone()).collect();
        assert_eq!(inner, [Some("1".to_owned()), Some("two".to_owned())]);
    }

    #[test]
    fn a_repeated_key_keeps_its_last_value() {
        assert_eq!(
            pair(r#"{"a":"1","a":"2"}"#)
                .0
                .expect("object")
                .a
                .0
                .as_deref(),
            Some("2")
        );
    }

    #[test]
    fn anything_but_an_object_is_not_one() {
        for json in ["[]", "1", r#""s""#, "null", "false"] {
            assert_eq!(pair(json), Obj(None), "{json}");
        }
        assert!(
            serde_json::from_str::<Obj<Pair>>(r#"{"a":"#).is_err(),
            "not JSON"
        );
    }

    #[test]
    fn data_tells_objects_arrays_scalars_and_null_apart() {
        let d = |json: &str| {
            serde_json::from_str::<MaybeData<Pair>>(json)
                .expect("JSON")
                .0
        };
        assert!(matches!(d(r#"{"a":"x"}"#), Some(Data::Object(_))));
        match d(r#"[{"a":"x"},3]"#) {
            Some(Data::Array(items)) => {
                assert_eq!(items.len(), 2);
                assert!(items[0].is_some() && items[1].is_none());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(d(r#""x""#), Some(Data::Scalar));
        assert_eq!(d("null"), None);
    }
}
