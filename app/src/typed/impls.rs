//! [`ToValue`], [`FromValue`], [`Constrained`] and [`MaxLen`] for the
//! standard types (the table in the module's documentation).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::hash::{BuildHasher, Hash};

use num_traits::ToPrimitive;

use super::*;

// ---- integers ----

fn int_of<'v>(v: &'v Value, cx: &'v Context<'_>) -> Result<&'v Int, ConvertError> {
    match cx.resolve(v)? {
        Value::Int(i) => Ok(i),
        other => Err(ConvertError::expected("int", other)),
    }
}

/// `must be an int from MIN to MAX (TYPE), not VALUE`.
fn out_of_range(ty: &str, min: &dyn fmt::Display, max: &dyn fmt::Display, i: &Int) -> ConvertError {
    let shown = match i {
        Int::Small(n) => n.to_string(),
        Int::Big(b) => format!("an int of {} bits", b.bits()),
    };
    ConvertError::new(format!(
        "must be an int from {min} to {max} ({ty}), not {shown}"
    ))
}

macro_rules! integer {
    ($($t:ty => $constraint:expr),* $(,)?) => {$(
        impl ToValue for $t {
            fn to_value(&self) -> Value {
                #[allow(irrefutable_let_patterns)]
                match i64::try_from(*self) {
                    Ok(small) => Value::Int(Int::Small(small)),
                    Err(_) => Value::Int(Int::from(BigInt::from(*self))),
                }
            }
        }

        impl FromValue for $t {
            fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
                // the common case first: a small int in range
                if let Value::Int(Int::Small(n)) = v {
                    #[allow(irrefutable_let_patterns)]
                    if let Ok(x) = <$t>::try_from(*n) {
                        return Ok(x);
                    }
                }
                let i = int_of(v, cx)?;
                let n = match i {
                    Int::Small(n) => <$t>::try_from(*n).ok(),
                    Int::Big(b) => <$t>::try_from(&**b).ok(),
                };
                n.ok_or_else(|| out_of_range(stringify!($t), &<$t>::MIN, &<$t>::MAX, i))
            }
        }

        impl Constrained for $t {
            fn constraint() -> Constraint {
                $constraint
            }
        }
    )*};
}

integer! {
    i8 => Constraint::int32(),
    i16 => Constraint::int32(),
    i32 => Constraint::int32(),
    u16 => Constraint::int32(),
    u32 => Constraint::int_bytes(4),
    i64 => Constraint::int_bytes(8),
    u64 => Constraint::int_bytes(8),
    isize => Constraint::int_bytes(8),
    usize => Constraint::int_bytes(8),
    i128 => Constraint::int_bytes(16),
    u128 => Constraint::int_bytes(16),
}

/// `u8` is an `int` on its own, but `Vec<u8>` and `&[u8]` are `bytes`.
impl ToValue for u8 {
    fn to_value(&self) -> Value {
        Value::int(i64::from(*self))
    }

    fn slice_to_value(items: &[u8]) -> Value {
        Value::bytes(items)
    }
}

impl FromValue for u8 {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        let i = int_of(v, cx)?;
        i.to_i64()
            .and_then(|n| u8::try_from(n).ok())
            .ok_or_else(|| out_of_range("u8", &u8::MIN, &u8::MAX, i))
    }

    fn vec_from_value(v: &Value, cx: &Context<'_>) -> Result<Vec<u8>, ConvertError> {
        Bytes::from_value(v, cx).map(Vec::from)
    }
}

impl Constrained for u8 {
    fn constraint() -> Constraint {
        Constraint::int32()
    }

    fn vec_constraint(max_length: Option<usize>) -> Constraint {
        Constraint::byte_string(max_length)
    }
}

impl ToValue for Int {
    fn to_value(&self) -> Value {
        Value::Int(self.clone())
    }
}

impl FromValue for Int {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        int_of(v, cx).cloned()
    }
}

impl Constrained for Int {
    fn constraint() -> Constraint {
        Constraint::int()
    }
}

impl ToValue for BigInt {
    fn to_value(&self) -> Value {
        Value::Int(Int::from(self.clone()))
    }
}

impl FromValue for BigInt {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        int_of(v, cx).map(Int::to_bigint)
    }
}

impl Constrained for BigInt {
    fn constraint() -> Constraint {
        Constraint::int()
    }
}

// ---- bool, float, None ----

impl ToValue for bool {
    fn to_value(&self) -> Value {
        Value::Bool(*self)
    }
}

impl FromValue for bool {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::Bool(b) => Ok(*b),
            other => Err(ConvertError::expected("bool", other)),
        }
    }
}

impl Constrained for bool {
    fn constraint() -> Constraint {
        Constraint::boolean()
    }
}

impl ToValue for f64 {
    fn to_value(&self) -> Value {
        Value::Float(*self)
    }
}

/// A float, or an int (Python's `float` constraint accepts both) that a
/// float can hold in range.
impl FromValue for f64 {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::Float(f) => Ok(*f),
            Value::Int(Int::Small(n)) => Ok(*n as f64),
            Value::Int(Int::Big(b)) => b
                .to_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| ConvertError::new("int too large to convert to float")),
            other => Err(ConvertError::expected("float", other)),
        }
    }
}

impl Constrained for f64 {
    fn constraint() -> Constraint {
        Constraint::number()
    }
}

impl ToValue for () {
    fn to_value(&self) -> Value {
        Value::None
    }
}

impl FromValue for () {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::None => Ok(()),
            other => Err(ConvertError::expected("None", other)),
        }
    }
}

impl Constrained for () {
    fn constraint() -> Constraint {
        Constraint::Nothing
    }
}

// ---- text and bytes ----

/// `Constrained` and `MaxLen` for a text or bytes type: `$any` without a
/// length, `$max(Some(n))` with one.
macro_rules! string_constraints {
    ($($t:ty),+ => $any:expr, $max:path) => {$(
        impl Constrained for $t {
            fn constraint() -> Constraint {
                $any
            }
        }

        impl MaxLen for $t {
            fn constraint_with_max_len(max: usize) -> Constraint {
                $max(Some(max))
            }
        }
    )+};
}

string_constraints!(String, Text => Constraint::text(), Constraint::unicode);
string_constraints!(Bytes => Constraint::bytes(), Constraint::byte_string);

impl ToValue for str {
    fn to_value(&self) -> Value {
        Value::str(self)
    }
}

impl ToValue for String {
    fn to_value(&self) -> Value {
        Value::str(self)
    }
}

impl FromValue for String {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        Text::from_value(v, cx).map(|t| t.as_str().to_owned())
    }
}

impl ToValue for Text {
    fn to_value(&self) -> Value {
        Value::Str(self.clone())
    }
}

impl FromValue for Text {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::Str(t) => Ok(t.clone()),
            other => Err(ConvertError::expected("str", other)),
        }
    }
}

impl ToValue for Bytes {
    fn to_value(&self) -> Value {
        Value::Bytes(self.clone())
    }
}

impl FromValue for Bytes {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::Bytes(b) => Ok(b.clone()),
            other => Err(ConvertError::expected("bytes", other)),
        }
    }
}

// ---- containers ----

impl<T: ToValue> ToValue for [T] {
    fn to_value(&self) -> Value {
        T::slice_to_value(self)
    }
}

impl<T: ToValue> ToValue for Vec<T> {
    fn to_value(&self) -> Value {
        T::slice_to_value(self)
    }
}

impl<T: FromValue> FromValue for Vec<T> {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        T::vec_from_value(v, cx)
    }
}

impl<T: Constrained> Constrained for Vec<T> {
    fn constraint() -> Constraint {
        T::vec_constraint(None)
    }
}

impl<T: Constrained> MaxLen for Vec<T> {
    fn constraint_with_max_len(max: usize) -> Constraint {
        T::vec_constraint(Some(max))
    }
}

impl<T: ToValue + ?Sized> ToValue for &T {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: ToValue + ?Sized> ToValue for Box<T> {
    fn to_value(&self) -> Value {
        (**self).to_value()
    }
}

impl<T: FromValue> FromValue for Box<T> {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        let _deeper = cx.enter()?;
        T::from_value(v, cx).map(Box::new)
    }
}

impl<T: Constrained> Constrained for Box<T> {
    fn constraint() -> Constraint {
        T::constraint()
    }
}

impl<T: ToValue> ToValue for Option<T> {
    fn to_value(&self) -> Value {
        match self {
            Some(v) => v.to_value(),
            None => Value::None,
        }
    }
}

impl<T: FromValue> FromValue for Option<T> {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::None => Ok(None),
            _ => {
                let _deeper = cx.enter()?;
                T::from_value(v, cx).map(Some)
            }
        }
    }

    fn absent() -> Option<Self> {
        Some(None)
    }
}

impl<T: Constrained> Constrained for Option<T> {
    fn constraint() -> Constraint {
        T::constraint().or_none()
    }
}

impl<T: MaxLen> MaxLen for Option<T> {
    fn constraint_with_max_len(max: usize) -> Constraint {
        T::constraint_with_max_len(max).or_none()
    }
}

macro_rules! tuple {
    ($(($($n:tt $t:ident),+) $len:expr;)*) => {$(
        impl<$($t: ToValue),+> ToValue for ($($t,)+) {
            fn to_value(&self) -> Value {
                Value::Tuple(vec![$(self.$n.to_value()),+])
            }
        }

        impl<$($t: FromValue),+> FromValue for ($($t,)+) {
            fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
                let items = match cx.resolve(v)? {
                    Value::Tuple(items) if items.len() == $len => items,
                    Value::Tuple(items) => {
                        return Err(ConvertError::new(format!(
                            "must be a tuple of {} items, not of {}",
                            $len,
                            items.len()
                        )))
                    }
                    other => return Err(ConvertError::expected("tuple", other)),
                };
                let _deeper = cx.enter()?;
                Ok(($($t::from_value(&items[$n], cx).map_err(|e| e.at_index($n))?,)+))
            }
        }

        impl<$($t: Constrained),+> Constrained for ($($t,)+) {
            fn constraint() -> Constraint {
                Constraint::tuple_of([$($t::constraint()),+])
            }
        }
    )*};
}

tuple! {
    (0 A) 1;
    (0 A, 1 B) 2;
    (0 A, 1 B, 2 C) 3;
    (0 A, 1 B, 2 C, 3 D) 4;
    (0 A, 1 B, 2 C, 3 D, 4 E) 5;
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F) 6;
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G) 7;
    (0 A, 1 B, 2 C, 3 D, 4 E, 5 F, 6 G, 7 H) 8;
}

/// The items of a received set (`set` or `frozenset`).
fn set_items<'v>(v: &'v Value, cx: &'v Context<'_>) -> Result<&'v [Value], ConvertError> {
    match cx.resolve(v)? {
        Value::Set(items) | Value::FrozenSet(items) => Ok(items),
        other => Err(ConvertError::expected("set", other)),
    }
}

/// The entries of a received dict.
fn dict_entries<'v>(
    v: &'v Value,
    cx: &'v Context<'_>,
) -> Result<&'v [(Value, Value)], ConvertError> {
    match cx.resolve(v)? {
        Value::Dict(entries) => Ok(entries),
        other => Err(ConvertError::expected("dict", other)),
    }
}

fn dict_entry<K: FromValue, V: FromValue>(
    (k, v): &(Value, Value),
    cx: &Context<'_>,
) -> Result<(K, V), ConvertError> {
    let key = K::from_value(k, cx).map_err(ConvertError::in_key)?;
    let value = V::from_value(v, cx).map_err(|e| e.at_key(k))?;
    Ok((key, value))
}

macro_rules! collection {
    ($($kind:ident $ty:ident<$($p:ident),+> where $($bound:path),* ;)*) => {$(
        collection!(@$kind $ty<$($p),+> where $($bound),*);
    )*};
    (@set $ty:ident<$t:ident> where $($bound:path),*) => {
        impl<$t: ToValue $(+ $bound)*> ToValue for $ty<$t> {
            /// A Python `set` (never a `frozenset`).
            fn to_value(&self) -> Value {
                Value::Set(self.iter().map(ToValue::to_value).collect())
            }
        }

        impl<$t: FromValue $(+ $bound)*> FromValue for $ty<$t> {
            fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
                let items = set_items(v, cx)?;
                let _deeper = cx.enter()?;
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| $t::from_value(item, cx).map_err(|e| e.at_index(i)))
                    .collect()
            }
        }

        impl<$t: Constrained> Constrained for $ty<$t> {
            fn constraint() -> Constraint {
                Constraint::set_of($t::constraint(), None)
            }
        }

        impl<$t: Constrained> MaxLen for $ty<$t> {
            fn constraint_with_max_len(max: usize) -> Constraint {
                Constraint::set_of($t::constraint(), Some(max))
            }
        }
    };
    (@map $ty:ident<$k:ident, $v:ident> where $($bound:path),*) => {
        impl<$k: ToValue $(+ $bound)*, $v: ToValue> ToValue for $ty<$k, $v> {
            fn to_value(&self) -> Value {
                Value::Dict(self.iter().map(|(k, v)| (k.to_value(), v.to_value())).collect())
            }
        }

        impl<$k: FromValue $(+ $bound)*, $v: FromValue> FromValue for $ty<$k, $v> {
            fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
                let entries = dict_entries(v, cx)?;
                let _deeper = cx.enter()?;
                entries.iter().map(|e| dict_entry(e, cx)).collect()
            }
        }

        impl<$k: Constrained, $v: Constrained> Constrained for $ty<$k, $v> {
            fn constraint() -> Constraint {
                Constraint::dict_of($k::constraint(), $v::constraint(), None)
            }
        }

        impl<$k: Constrained, $v: Constrained> MaxLen for $ty<$k, $v> {
            fn constraint_with_max_len(max: usize) -> Constraint {
                Constraint::dict_of($k::constraint(), $v::constraint(), Some(max))
            }
        }
    };
}

collection! {
    set BTreeSet<T> where Ord;
    map BTreeMap<K, V> where Ord;
}

// HashSet and HashMap take any hasher that can be made from nothing.
impl<T: ToValue, S> ToValue for HashSet<T, S> {
    /// A Python `set` (never a `frozenset`).
    fn to_value(&self) -> Value {
        Value::Set(self.iter().map(ToValue::to_value).collect())
    }
}

impl<T: FromValue + Eq + Hash, S: BuildHasher + Default> FromValue for HashSet<T, S> {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        let items = set_items(v, cx)?;
        let _deeper = cx.enter()?;
        items
            .iter()
            .enumerate()
            .map(|(i, item)| T::from_value(item, cx).map_err(|e| e.at_index(i)))
            .collect()
    }
}

impl<T: Constrained, S> Constrained for HashSet<T, S> {
    fn constraint() -> Constraint {
        Constraint::set_of(T::constraint(), None)
    }
}

impl<T: Constrained, S> MaxLen for HashSet<T, S> {
    fn constraint_with_max_len(max: usize) -> Constraint {
        Constraint::set_of(T::constraint(), Some(max))
    }
}

impl<K: ToValue, V: ToValue, S> ToValue for HashMap<K, V, S> {
    fn to_value(&self) -> Value {
        Value::Dict(
            self.iter()
                .map(|(k, v)| (k.to_value(), v.to_value()))
                .collect(),
        )
    }
}

impl<K: FromValue + Eq + Hash, V: FromValue, S: BuildHasher + Default> FromValue
    for HashMap<K, V, S>
{
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        let entries = dict_entries(v, cx)?;
        let _deeper = cx.enter()?;
        entries.iter().map(|e| dict_entry(e, cx)).collect()
    }
}

impl<K: Constrained, V: Constrained, S> Constrained for HashMap<K, V, S> {
    fn constraint() -> Constraint {
        Constraint::dict_of(K::constraint(), V::constraint(), None)
    }
}

impl<K: Constrained, V: Constrained, S> MaxLen for HashMap<K, V, S> {
    fn constraint_with_max_len(max: usize) -> Constraint {
        Constraint::dict_of(K::constraint(), V::constraint(), Some(max))
    }
}

// ---- references and raw values ----

impl ToValue for RemoteRef {
    fn to_value(&self) -> Value {
        Value::Remote(self.clone())
    }
}

impl FromValue for RemoteRef {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::Remote(r) => Ok(r.clone()),
            other => Err(ConvertError::expected("a remote reference", other)),
        }
    }
}

impl Constrained for RemoteRef {
    fn constraint() -> Constraint {
        Constraint::any_reference()
    }
}

impl ToValue for ObjectId {
    fn to_value(&self) -> Value {
        Value::Local(*self)
    }
}

impl FromValue for ObjectId {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        match cx.resolve(v)? {
            Value::Local(id) => Ok(*id),
            other => Err(ConvertError::expected("one of our objects", other)),
        }
    }
}

impl Constrained for ObjectId {
    fn constraint() -> Constraint {
        Constraint::any_reference()
    }
}

/// Anything, as it came: a self-contained copy ([`Scope::detach`]), to
/// keep or send on.
impl ToValue for Value {
    fn to_value(&self) -> Value {
        self.clone()
    }
}

impl FromValue for Value {
    fn from_value(v: &Value, cx: &Context<'_>) -> Result<Self, ConvertError> {
        Ok(cx.scope().detach(v))
    }
}

impl Constrained for Value {
    fn constraint() -> Constraint {
        Constraint::Any
    }
}
