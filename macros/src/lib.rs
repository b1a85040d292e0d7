//! The macros of foolscap-rs's typed interfaces, used through `foolscap`
//! (or `foolscap_app`): [`macro@remote_interface`] turns a Rust trait
//! into a Foolscap RemoteInterface (schema, server adapter, client stub),
//! and [`macro@Copyable`] a struct into a pass-by-copy type.
//!
//! The generated code names the runtime through one path, `::foolscap`
//! unless `crate = path` says otherwise (`crate = foolscap_app` for a
//! program that depends on `foolscap-app` only), and calls the helpers of
//! `foolscap::typed::__rt` for every step it repeats, so that what it
//! generates stays short enough to read (`cargo expand`).

use proc_macro::TokenStream;
use proc_macro2::{Span, TokenStream as Tokens};
use quote::{format_ident, quote, ToTokens};
use syn::spanned::Spanned;
use syn::{
    parse_macro_input, Attribute, Data, DeriveInput, Error, Expr, FnArg, GenericArgument, Ident,
    ItemTrait, LitInt, LitStr, Pat, Path, PathArguments, ReturnType, TraitItem, Type,
};

/// Declares a Foolscap RemoteInterface with a Rust trait, and generates
/// from that one declaration:
///
/// - the interface's name and schema (`foolscap::typed::RemoteInterface`
///   on the two types below), derived from the Rust types of the
///   arguments and results (see `foolscap::typed` for the table), refined
///   by attributes;
/// - `<Trait>Server<T>`, a server adapter: wrap an implementation in it
///   and it is an `Object` that announces the interface, binds positional
///   and keyword arguments as Python does (with Python's `TypeError` texts
///   for missing, extra and duplicate arguments), converts them (a value
///   of the wrong type is a `TypeError` naming the argument and where in
///   it) and answers with the method's result or failure;
/// - `<Trait>Client`, a typed client stub over a reference: one blocking
///   method per remote method (`Result<T, foolscap::Error>`), a
///   callback form `<method>_async` for event loops, and
///   `<method>_future` for async code: a `foolscap::typed::Pending<T>`
///   to `.await` on any executor (tokio's included). It is itself a
///   typed value: an argument or result of that type is a reference to
///   the interface.
///
/// Methods take `&self` and owned arguments of any type that converts
/// (`foolscap::typed::Remote`), and return `Result<T, E>` (with `E:
/// Into<Failure>`, e.g. `Failure`), a plain `T`, or nothing (Python's
/// `None`). A method that answers later takes a last parameter
/// `foolscap::typed::Reply<T>` instead of returning.
///
/// A method may be an `async fn` (the trait then declares it as `fn m(..)
/// -> impl Future<Output = R> + Send`, which an `async fn` in the
/// implementation satisfies): the server adapter answers when its future
/// completes, without holding an engine thread meanwhile. The engine runs
/// the future (a task of the runtime on tokio, a thread of its own on the
/// other engines); it owns a clone of the implementation, so an
/// interface with async methods needs `T: Clone` (keep state in an
/// `Arc`). A future that panics answers with a failure. (An interface
/// extending one with async methods needs `T: Clone` too.)
///
/// ```
/// use std::time::Duration;
/// use foolscap::typed::Failure;
///
/// #[foolscap::remote_interface(name = "RIRelay.foolscap-rs.example")]
/// pub trait Relay {
///     /// Asks `other` to double `x`, and answers with what it said.
///     async fn relay(&self, other: RelayClient, x: i64) -> Result<i64, Failure>;
///     async fn double(&self, x: i64) -> i64;
/// }
///
/// #[derive(Clone)]
/// struct R;
/// impl Relay for R {
///     async fn relay(&self, other: RelayClient, x: i64) -> Result<i64, Failure> {
///         // awaits another call: no engine thread waits for it
///         other.double_future(x).await.map_err(|e| e.to_failure())
///     }
///     async fn double(&self, x: i64) -> i64 {
///         x * 2
///     }
/// }
///
/// let t = Duration::from_secs(10);
/// let server = foolscap::threads::new_tub()?;
/// server.listen("127.0.0.1:0")?;
/// let furl = server.register(std::sync::Arc::new(RelayServer(R)), None)?;
/// let client = foolscap::threads::new_tub()?;
/// let relay = RelayClient::connect(&client, &furl.to_string(), t)?;
/// // the server calls back one of our objects, of the same interface
/// let mine = RelayClient::local(&client, std::sync::Arc::new(RelayServer(R)));
/// assert_eq!(relay.relay(mine, 21)?, 42);
/// // from async code: `relay.double_future(4).await` (any executor)
/// let pending = relay.double_future(4);
/// # let pending = std::pin::pin!(pending);
/// # let answer = block_on(pending);
/// assert_eq!(answer?, 8);
/// # fn block_on<F: std::future::Future>(mut f: std::pin::Pin<&mut F>) -> F::Output {
/// #     struct Unpark(std::thread::Thread);
/// #     impl std::task::Wake for Unpark {
/// #         fn wake(self: std::sync::Arc<Self>) { self.0.unpark() }
/// #     }
/// #     let waker = std::sync::Arc::new(Unpark(std::thread::current())).into();
/// #     let mut cx = std::task::Context::from_waker(&waker);
/// #     loop {
/// #         if let std::task::Poll::Ready(v) = f.as_mut().poll(&mut cx) { return v; }
/// #         std::thread::park();
/// #     }
/// # }
/// # Ok::<(), foolscap::Error>(())
/// ```
///
/// The client stub has methods of its own (`new`, `local`, `connect`,
/// `with_timeout`, `reference`, `tub`): a remote method cannot have one of
/// these names.
///
/// Attributes of the macro: `name = "RIFoo.example"` (Python's
/// `__remote_name__`; the trait's name if absent), `client = Name` and
/// `server = Name` (other names for the generated types), `crate = path`,
/// and `extends = RIParent`: Python's interface inheritance (the parent's
/// methods are part of this schema, the server adapter answers them too,
/// and the client stub derefs to the parent's stub; the parent trait
/// becomes a supertrait, and its generated types are looked for beside
/// it under their default names).
///
/// Attributes of an argument:
/// - `#[max_len = N]`: at most N characters, bytes, items, members or keys
///   (`ByteStringConstraint(maxLength=N)`, `ListOf(c, maxLength=N)`, ...);
/// - `#[optional]` on an `Option<T>`: Python's `Optional(c)`, the caller
///   may leave it out (`None` in Rust, and the client stub sends nothing
///   for `None`);
/// - `#[schema(expr)]`: this constraint instead of the derived one, e.g.
///   `#[schema(Constraint::int32())]` or `#[schema(Constraint::int_bytes(8))]`
///   (`Constraint` is in scope).
///
/// Attributes of a method: `#[unconstrained]` (Python's
/// `UnconstrainedMethod()`: no schema checks; the Rust types still
/// convert) and `#[returns(expr)]` (the return constraint instead of the
/// derived one).
///
/// ```
/// use std::time::Duration;
/// use foolscap::typed::{Failure, RemoteInterface};
///
/// #[foolscap::remote_interface(name = "RICalculator.foolscap-rs.example")]
/// pub trait Calculator {
///     fn add(&self, a: i64, b: i64) -> Result<i64, Failure>;
///     /// Python: `def label(text=UnicodeConstraint(10), upper=Optional(bool)): return str`
///     fn label(&self, #[max_len = 10] text: String, #[optional] upper: Option<bool>) -> String;
/// }
///
/// struct Calc;
/// impl Calculator for Calc {
///     fn add(&self, a: i64, b: i64) -> Result<i64, Failure> {
///         a.checked_add(b)
///             .ok_or_else(|| Failure::new("builtins.OverflowError", "too large"))
///     }
///     fn label(&self, text: String, upper: Option<bool>) -> String {
///         if upper == Some(true) { text.to_uppercase() } else { text }
///     }
/// }
///
/// let t = Duration::from_secs(10);
/// let server = foolscap::threads::new_tub()?;
/// server.listen("127.0.0.1:0")?;
/// let furl = server.register(std::sync::Arc::new(CalculatorServer(Calc)), None)?;
///
/// let client = foolscap::threads::new_tub()?;
/// let calc = CalculatorClient::connect(&client, &furl.to_string(), t)?;
/// assert_eq!(calc.add(1, 2)?, 3);
/// assert_eq!(calc.label("abc".into(), Some(true))?, "ABC");
/// assert_eq!(calc.label("abc".into(), None)?, "abc");
/// let err = calc.add(i64::MAX, 1).unwrap_err();
/// assert_eq!(err.failure().unwrap().value, "too large");
///
/// let schema = CalculatorClient::schema();
/// assert_eq!(schema.name(), "RICalculator.foolscap-rs.example");
/// assert_eq!(schema.method("label").unwrap().arguments()[1].is_required(), false);
/// # Ok::<(), foolscap::Error>(())
/// ```
#[proc_macro_attribute]
pub fn remote_interface(attr: TokenStream, item: TokenStream) -> TokenStream {
    let mut options = InterfaceOptions::default();
    let parser = syn::meta::parser(|meta| {
        if meta.path.is_ident("name") {
            options.name = Some(meta.value()?.parse::<LitStr>()?);
        } else if meta.path.is_ident("client") {
            options.client = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("server") {
            options.server = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("crate") {
            options.krate = Some(meta.value()?.parse()?);
        } else if meta.path.is_ident("extends") {
            options.extends = Some(meta.value()?.parse()?);
        } else {
            return Err(meta.error("expected name, client, server, extends or crate"));
        }
        Ok(())
    });
    parse_macro_input!(attr with parser);
    let item = parse_macro_input!(item as ItemTrait);
    interface(options, item)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

/// Makes a struct with named fields a pass-by-copy type (Python's
/// `Copyable`/`RemoteCopy` pair): it travels as a `copyable` of the type
/// name given by `#[foolscap(type_name = "...")]`, each field an
/// attribute of its state (named as the field, or
/// `#[foolscap(rename = "...")]`). Receiving it refuses another type
/// name, unknown attributes and missing ones (an `Option` field may be
/// missing: `None`). Its constraint in a schema is `Any()`, as Python has
/// no copyable constraint; its `state_schema()` lists each attribute's.
///
/// A Tub receives copyables only of the types it knows:
/// `foolscap::typed::Copyable::register(&tub)`.
///
/// ```
/// use foolscap::typed::{Copyable, FromValue, ToValue};
///
/// #[derive(Debug, PartialEq, Copyable)]
/// #[foolscap(type_name = "foolscap-rs.example.Point")]
/// struct Point {
///     x: i64,
///     #[foolscap(rename = "y-coordinate")]
///     y: i64,
///     label: Option<String>,
/// }
///
/// let p = Point { x: 1, y: 2, label: None };
/// let v = p.to_value();
/// assert_eq!(Point::from_value_alone(&v).unwrap(), p);
/// assert_eq!(Point::TYPE_NAME, "foolscap-rs.example.Point");
/// assert_eq!(Point::state_schema()[1].0, "y-coordinate");
/// ```
#[proc_macro_derive(Copyable, attributes(foolscap))]
pub fn derive_copyable(item: TokenStream) -> TokenStream {
    let item = parse_macro_input!(item as DeriveInput);
    copyable(item)
        .unwrap_or_else(Error::into_compile_error)
        .into()
}

#[derive(Default)]
struct InterfaceOptions {
    name: Option<LitStr>,
    client: Option<Ident>,
    server: Option<Ident>,
    krate: Option<Path>,
    /// The parent interface's trait (its generated types are found beside
    /// it, by their default names).
    extends: Option<Path>,
}

/// A variable of the generated code, out of reach of the user's names
/// (an argument may be called `call` or `args`).
fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

fn runtime(krate: &Option<Path>) -> Tokens {
    match krate {
        Some(path) => quote!(#path::typed::__rt),
        None => quote!(::foolscap::typed::__rt),
    }
}

/// One declared argument.
struct Param {
    name: Ident,
    /// The Rust type of the value (the `T` of an `#[optional] Option<T>`).
    ty: Type,
    /// The parameter's declared type.
    declared: Type,
    optional: bool,
    constraint: Tokens,
}

/// How a method answers.
enum Answer {
    /// `-> Result<T, E>`.
    Fallible(Type),
    /// `-> T` (or nothing: `()`).
    Plain(Type),
    /// A last parameter `Reply<T>`.
    Later(Type),
}

impl Answer {
    fn ty(&self) -> &Type {
        match self {
            Answer::Fallible(t) | Answer::Plain(t) | Answer::Later(t) => t,
        }
    }
}

struct Method {
    name: Ident,
    params: Vec<Param>,
    answer: Answer,
    /// Declared `async fn`: answered when its future completes.
    asynchronous: bool,
    unconstrained: bool,
    returns: Option<Expr>,
}

fn interface(options: InterfaceOptions, mut item: ItemTrait) -> syn::Result<Tokens> {
    let rt = runtime(&options.krate);
    let trait_name = item.ident.clone();
    let name = options
        .name
        .unwrap_or_else(|| LitStr::new(&trait_name.to_string(), trait_name.span()));
    let client = options
        .client
        .unwrap_or_else(|| format_ident!("{}Client", trait_name));
    let server = options
        .server
        .unwrap_or_else(|| format_ident!("{}Server", trait_name));
    if !item.generics.params.is_empty() {
        return Err(Error::new(
            item.generics.span(),
            "a remote interface cannot be generic",
        ));
    }
    let mut methods = Vec::new();
    for it in &mut item.items {
        if let TraitItem::Fn(f) = it {
            methods.push(method(&mut f.attrs, &mut f.sig)?);
        }
    }
    // a parent interface: its trait, client and server
    let parent = match &options.extends {
        Some(path) => {
            let last = path
                .segments
                .last()
                .expect("a path has a segment")
                .ident
                .clone();
            if !item.supertraits.iter().any(|b| {
                matches!(b, syn::TypeParamBound::Trait(t)
                    if t.path.segments.last().is_some_and(|s| s.ident == last))
            }) {
                item.supertraits.push(syn::parse_quote!(#path));
            }
            let beside = |suffix: &str| {
                let mut p = path.clone();
                let seg = p.segments.last_mut().expect("a path has a segment");
                seg.ident = format_ident!("{}{}", last, suffix);
                p
            };
            Some((beside("Client"), beside("Server")))
        }
        None => None,
    };
    let vis = &item.vis;
    // async methods' futures own a clone of the implementation
    let clone_bound = if methods.iter().any(|m| m.asynchronous) {
        quote!(+ Clone)
    } else {
        quote!()
    };

    // the generated code's own variables cannot clash with argument names
    let (call, class) = (local("call"), local("class"));
    let schema_methods = methods.iter().map(|m| schema_method(m, &rt));
    let arms = methods.iter().map(|m| server_arm(m, &trait_name, &rt));
    let client_methods = methods.iter().map(|m| client_method(m, &name, &rt));
    let (inherit, fallback, parent_field, parent_init, parent_timeout, deref) = match &parent {
        Some((pclient, pserver)) => (
            quote!(.inheriting(&<#pclient as #rt::RemoteInterface>::schema())),
            quote! {
                if let Some(#call) = #pserver::<T>::dispatch(imp, #call, #class) {
                    return Some(#call);
                }
            },
            quote!(parent: #pclient,),
            quote!(parent: #pclient::with_target(tub, target.clone()),),
            quote!(self.parent = self.parent.with_timeout(timeout);),
            quote! {
                /// The parent interface's methods.
                impl ::std::ops::Deref for #client {
                    type Target = #pclient;

                    fn deref(&self) -> &#pclient {
                        &self.parent
                    }
                }
            },
        ),
        None => (
            quote!(),
            quote!(return Some(#call);),
            quote!(),
            quote!(),
            quote!(),
            quote!(),
        ),
    };
    let doc_server = format!(
        "The server adapter of [`{trait_name}`] (RemoteInterface `{}`): \
         `{server}(implementation)` is an `Object`.",
        name.value()
    );
    let doc_client = format!(
        "A typed reference to a remote [`{trait_name}`] (RemoteInterface `{}`): \
         blocking methods, and `_async` ones that call back.",
        name.value()
    );

    Ok(quote! {
        #item

        #[doc = #doc_server]
        #vis struct #server<T>(pub T);

        #[doc = #doc_client]
        #[derive(Clone, Debug)]
        #vis struct #client {
            tub: #rt::Tub,
            target: #rt::Target,
            timeout: #rt::Duration,
            #parent_field
        }

        #deref

        impl #rt::RemoteInterface for #client {
            const NAME: &'static str = #name;

            fn schema() -> #rt::Arc<#rt::InterfaceSchema> {
                static SCHEMA: #rt::OnceLock<#rt::Arc<#rt::InterfaceSchema>> = #rt::OnceLock::new();
                SCHEMA
                    .get_or_init(|| {
                        #[allow(unused_imports)]
                        use #rt::Constraint;
                        #rt::Arc::new(#rt::InterfaceSchema::new(#name) #(.with_method(#schema_methods))* #inherit)
                    })
                    .clone()
            }
        }

        impl<T> #rt::RemoteInterface for #server<T> {
            const NAME: &'static str = #name;

            fn schema() -> #rt::Arc<#rt::InterfaceSchema> {
                <#client as #rt::RemoteInterface>::schema()
            }
        }

        impl<T: #trait_name #clone_bound + Send + Sync + 'static> #server<T> {
            /// Answers `call` if this interface (or a parent) has its
            /// method; gives it back otherwise.
            #[doc(hidden)]
            #[inline]
            pub fn dispatch(imp: &T, #call: #rt::Call, #class: fn() -> &'static str) -> Option<#rt::Call> {
                match #call.method.as_str() {
                    #(#arms)*
                    _ => {
                        #fallback
                    }
                }
                None
            }
        }

        impl<T: #trait_name #clone_bound + Send + Sync + 'static> #rt::Object for #server<T> {
            fn call(&self, #call: #rt::Call) {
                // the class name is for error texts only: found when needed
                let #class = #rt::class_name::<T>;
                if let Some(#call) = Self::dispatch(&self.0, #call, #class) {
                    #call.no_such_method(#class())
                }
            }

            fn class_name(&self) -> &str {
                #rt::class_name::<T>()
            }

            fn interface(&self) -> &str {
                #name
            }

            fn schema(&self) -> Option<#rt::Arc<#rt::InterfaceSchema>> {
                Some(<Self as #rt::RemoteInterface>::schema())
            }
        }

        impl #client {
            /// A typed reference over `target`, called through `tub`; makes
            /// the interface known to `tub` (its calls are checked against
            /// the schema).
            pub fn new(tub: &#rt::Tub, target: #rt::RemoteRef) -> Self {
                Self::with_target(tub, #rt::Target::Remote(target))
            }

            /// A typed reference to one of our own objects, `object`
            /// (which should announce this interface), to pass as an
            /// argument: calls through it fail (call the object directly).
            pub fn local(tub: &#rt::Tub, object: #rt::Arc<dyn #rt::Object>) -> Self {
                match tub.local(object) {
                    #rt::Value::Local(id) => Self::with_target(tub, #rt::Target::Local(id)),
                    other => unreachable!("Tub::local gave {other:?}"),
                }
            }

            #[doc(hidden)]
            pub fn with_target(tub: &#rt::Tub, target: #rt::Target) -> Self {
                tub.add_interface(<Self as #rt::RemoteInterface>::schema());
                #client {
                    #parent_init
                    tub: tub.clone(),
                    target,
                    timeout: #rt::DEFAULT_TIMEOUT,
                }
            }

            /// Connects to the object at `furl` (waiting at most `timeout`),
            /// which blocking calls then also wait for their answers.
            pub fn connect(tub: &#rt::Tub, furl: &str, timeout: #rt::Duration) -> Result<Self, #rt::Error> {
                let scope = #rt::Scope::default();
                let cx = #rt::Context::new(&scope, Some(tub));
                let target = <#rt::RemoteRef as #rt::FromValue>::from_value(&tub.get_reference(furl, timeout)?, &cx)
                    .map_err(|e| e.within(furl))?;
                Ok(Self::new(tub, target).with_timeout(timeout))
            }

            /// Blocking calls wait at most `timeout` for their answers
            /// (60 s unless set).
            pub fn with_timeout(mut self, timeout: #rt::Duration) -> Self {
                self.timeout = timeout;
                #parent_timeout
                self
            }

            /// The reference (`None` for one of our own objects).
            pub fn reference(&self) -> Option<&#rt::RemoteRef> {
                match &self.target {
                    #rt::Target::Remote(r) => Some(r),
                    #rt::Target::Local(_) => None,
                }
            }

            /// The Tub calls go through.
            pub fn tub(&self) -> &#rt::Tub {
                &self.tub
            }

            #(#client_methods)*
        }

        impl #rt::ToValue for #client {
            fn to_value(&self) -> #rt::Value {
                self.target.to_value()
            }
        }

        impl #rt::FromValue for #client {
            fn from_value(v: &#rt::Value, cx: &#rt::Context<'_>) -> Result<Self, #rt::ConvertError> {
                let (tub, target) = #rt::stub_parts(v, cx, #name)?;
                Ok(Self::with_target(&tub, target))
            }
        }

        impl #rt::Constrained for #client {
            fn constraint() -> #rt::Constraint {
                #rt::Constraint::reference_to(#name)
            }
        }
    })
}

/// Reads (and removes) the macro's attributes of a method and its
/// arguments.
fn method(attrs: &mut Vec<Attribute>, sig: &mut syn::Signature) -> syn::Result<Method> {
    let mut unconstrained = false;
    let mut returns = None;
    let mut error = None;
    attrs.retain(|a| {
        if a.path().is_ident("unconstrained") {
            unconstrained = true;
            false
        } else if a.path().is_ident("returns") {
            match a.parse_args::<Expr>() {
                Ok(e) => returns = Some(e),
                Err(e) => error = Some(e),
            }
            false
        } else {
            true
        }
    });
    if let Some(e) = error {
        return Err(e);
    }
    if !sig.generics.params.is_empty() {
        return Err(Error::new(sig.span(), "a remote method cannot be generic"));
    }
    let asynchronous = sig.asyncness.is_some();
    match sig.inputs.first() {
        Some(FnArg::Receiver(r)) if r.reference.is_some() && r.mutability.is_none() => {}
        _ => return Err(Error::new(sig.span(), "a remote method takes `&self`")),
    }
    let mut params = Vec::new();
    let mut later = None;
    let count = sig.inputs.len();
    for (i, input) in sig.inputs.iter_mut().enumerate().skip(1) {
        let FnArg::Typed(pt) = input else {
            continue;
        };
        let Pat::Ident(ident) = &*pt.pat else {
            return Err(Error::new(pt.pat.span(), "name each argument"));
        };
        if i == count - 1 {
            if let Some(t) = generic_of(&pt.ty, "Reply") {
                if !pt.attrs.is_empty() {
                    return Err(Error::new(pt.span(), "the Reply takes no attributes"));
                }
                later = Some(t.clone());
                continue;
            }
        }
        params.push(param(ident.ident.clone(), &mut pt.attrs, &pt.ty)?);
    }
    if let Some(p) = params.windows(2).find(|w| w[0].optional && !w[1].optional) {
        return Err(Error::new(
            p[1].name.span(),
            "a required argument cannot follow an optional one (as in Python)",
        ));
    }
    if asynchronous && later.is_some() {
        return Err(Error::new(
            sig.span(),
            "an async method answers with its result, not through a Reply",
        ));
    }
    let answer = match (later, &sig.output) {
        (Some(t), ReturnType::Default) => Answer::Later(t),
        (Some(_), ReturnType::Type(_, ty)) => {
            return Err(Error::new(
                ty.span(),
                "a method that answers through a Reply returns nothing",
            ))
        }
        (None, ReturnType::Default) => Answer::Plain(syn::parse_quote!(())),
        (None, ReturnType::Type(_, ty)) => match result_ok(ty) {
            Some(t) => Answer::Fallible(t.clone()),
            None => Answer::Plain((**ty).clone()),
        },
    };
    if asynchronous {
        // in the trait: `fn m(&self, ..) -> impl Future<Output = R> + Send`,
        // which an `async fn` of the implementation satisfies; Send so
        // that the engine may run it on any of its threads
        let output = match &sig.output {
            ReturnType::Default => quote!(()),
            ReturnType::Type(_, ty) => ty.to_token_stream(),
        };
        sig.asyncness = None;
        sig.output = syn::parse_quote!(
            -> impl ::std::future::Future<Output = #output> + ::std::marker::Send
        );
    }
    Ok(Method {
        name: sig.ident.clone(),
        params,
        answer,
        asynchronous,
        unconstrained,
        returns,
    })
}

/// Reads (and removes) the macro's attributes of an argument.
fn param(name: Ident, attrs: &mut Vec<Attribute>, declared: &Type) -> syn::Result<Param> {
    let mut optional = false;
    let mut max_len: Option<LitInt> = None;
    let mut schema: Option<Expr> = None;
    let mut error: Option<Error> = None;
    attrs.retain(|a| {
        let path = a.path();
        let r = if path.is_ident("optional") {
            optional = true;
            Ok(())
        } else if path.is_ident("max_len") {
            match &a.meta {
                syn::Meta::NameValue(nv) => {
                    syn::parse2::<LitInt>(nv.value.to_token_stream()).map(|n| max_len = Some(n))
                }
                _ => a.parse_args::<LitInt>().map(|n| max_len = Some(n)),
            }
        } else if path.is_ident("schema") {
            a.parse_args::<Expr>().map(|e| schema = Some(e))
        } else {
            return true;
        };
        if let Err(e) = r {
            error.get_or_insert(e);
        }
        false
    });
    if let Some(e) = error {
        return Err(e);
    }
    let ty = if optional {
        match generic_of(declared, "Option") {
            Some(t) => t.clone(),
            None => {
                return Err(Error::new(
                    declared.span(),
                    "an #[optional] argument is an Option<T>",
                ))
            }
        }
    } else {
        declared.clone()
    };
    let constraint = match (schema, max_len) {
        (Some(_), Some(n)) => {
            return Err(Error::new(
                n.span(),
                "give either #[schema(...)] or #[max_len], not both",
            ))
        }
        (Some(e), None) => e.into_token_stream(),
        (None, Some(n)) => quote!(<#ty as MaxLen>::constraint_with_max_len(#n)),
        (None, None) => quote!(<#ty as Constrained>::constraint()),
    };
    Ok(Param {
        name,
        ty,
        declared: declared.clone(),
        optional,
        constraint,
    })
}

/// `T` of a type `Name<T>` (by the last segment of its path).
fn generic_of<'t>(ty: &'t Type, name: &str) -> Option<&'t Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first() {
        Some(GenericArgument::Type(t)) if args.args.len() == 1 => Some(t),
        _ => None,
    }
}

/// `T` of `Result<T, E>`.
fn result_ok(ty: &Type) -> Option<&Type> {
    let Type::Path(p) = ty else { return None };
    let last = p.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match (args.args.first(), args.args.len()) {
        (Some(GenericArgument::Type(t)), 2) => Some(t),
        _ => None,
    }
}

/// `MethodSchema::new("m").with_argument(...)...returning(...)` (the
/// constraints' types are named inside the schema function, where
/// `Constraint`, `Constrained` and `MaxLen` are in scope).
fn schema_method(m: &Method, rt: &Tokens) -> Tokens {
    let name = m.name.to_string();
    if m.unconstrained {
        return quote!(#rt::MethodSchema::unconstrained(#name));
    }
    let args = m.params.iter().map(|p| {
        let pname = p.name.to_string();
        let constraint = &p.constraint;
        let kind = if p.optional {
            quote!(optional)
        } else {
            quote!(required)
        };
        quote!(.with_argument(#rt::Argument::#kind(#pname, { use #rt::{Constrained, MaxLen}; #constraint })))
    });
    let returns = match &m.returns {
        Some(e) => e.to_token_stream(),
        None => {
            let ty = m.answer.ty();
            quote!(<#ty as #rt::Constrained>::constraint())
        }
    };
    quote!(#rt::MethodSchema::new(#name) #(#args)* .returning(#returns))
}

/// The server's `match` arm for one method.
fn server_arm(m: &Method, trait_name: &Ident, rt: &Tokens) -> Tokens {
    let name = &m.name;
    let method = name.to_string();
    let param_names: Vec<String> = m.params.iter().map(|p| p.name.to_string()).collect();
    let defaults = m.params.iter().filter(|p| p.optional).count();
    let vars: Vec<&Ident> = m.params.iter().map(|p| &p.name).collect();
    let (call, class, bound, cx, args, failure) = (
        local("call"),
        local("class"),
        local("bound"),
        local("cx"),
        local("args"),
        local("failure"),
    );
    let converts = m.params.iter().enumerate().map(|(i, p)| {
        let ty = &p.ty;
        let pname = p.name.to_string();
        let how = if p.optional {
            quote!(optional)
        } else {
            quote!(required)
        };
        quote!(#rt::#how::<#ty>(&#bound, &#cx, #i, #pname, #class, #method)?)
    });
    let invoke = quote!(#trait_name::#name(imp, #(#vars),*));
    let answer = match &m.answer {
        // an async method: its future, owning a clone of the
        // implementation, answers when it completes (run by the engine)
        Answer::Fallible(_) if m.asynchronous => quote!({
            let imp = imp.clone();
            #call.answer_future(async move { #rt::reply(#trait_name::#name(&imp, #(#vars),*).await) })
        }),
        Answer::Plain(_) if m.asynchronous => quote!({
            let imp = imp.clone();
            #call.answer_future(async move {
                Ok(#rt::ToValue::to_value(&#trait_name::#name(&imp, #(#vars),*).await))
            })
        }),
        Answer::Fallible(_) => quote!(#call.reply(#rt::reply(#invoke))),
        Answer::Plain(_) => quote!(#call.answer(#rt::ToValue::to_value(&#invoke))),
        Answer::Later(_) => {
            quote!(#trait_name::#name(imp, #(#vars,)* #rt::Reply::new(#call)))
        }
    };
    quote! {
        #method => {
            const SIGNATURE: #rt::Signature<'static> =
                #rt::Signature::new(#method, &[#(#param_names),*]).defaults(#defaults);
            let #args = (|| -> Result<_, #rt::Failure> {
                let (#bound, #cx) = #rt::bind(&#call, #class, &SIGNATURE)?;
                Ok((#(#converts,)*))
            })();
            match #args {
                Ok((#(#vars,)*)) => #answer,
                Err(#failure) => #call.fail(#failure),
            }
        }
    }
}

/// The client stub's two methods for one remote method.
fn client_method(m: &Method, interface: &LitStr, rt: &Tokens) -> Tokens {
    let name_lit = interface;
    let name = &m.name;
    let method = name.to_string();
    let name_async = format_ident!("{}_async", name);
    let answer = m.answer.ty();
    let params = m.params.iter().map(|p| {
        let (n, t) = (&p.name, &p.declared);
        quote!(#n: #t)
    });
    let params: Vec<Tokens> = params.collect();
    let (args_, answer_, done) = (local("args"), local("answer"), local("done"));
    let any_optional = m.params.iter().any(|p| p.optional);
    let (build, args, kwargs) = if any_optional {
        let pushes = m.params.iter().map(|p| {
            let (n, pname) = (&p.name, p.name.to_string());
            if p.optional {
                quote!(#args_.push_optional(#pname, #n.as_ref().map(#rt::ToValue::to_value));)
            } else {
                quote!(#args_.push(#pname, #rt::ToValue::to_value(&#n));)
            }
        });
        let n = m.params.len();
        (
            quote!(let mut #args_ = #rt::Args::with_capacity(#n); #(#pushes)*),
            quote!(&#args_.args),
            quote!(&#args_.kwargs),
        )
    } else {
        let values = m.params.iter().map(|p| {
            let n = &p.name;
            quote!(#rt::ToValue::to_value(&#n))
        });
        (
            quote!(let #args_ = [#(#values),*];),
            quote!(&#args_),
            quote!(&[]),
        )
    };
    let name_future = format_ident!("{}_future", name);
    let doc = format!("Calls `{method}` and waits for its answer.");
    let doc_future = format!(
        "Calls `{method}`; the answer is to `.await` (on any executor). Sent at once; \
         dropping the future stops waiting for it."
    );
    let doc_async = format!(
        "Calls `{method}`; `done` runs once with the answer (on an engine thread: it must \
         not block), or at once on this thread if the call cannot be sent."
    );
    quote! {
        #[doc = #doc]
        #[allow(clippy::too_many_arguments)] // as many as the remote method has
        pub fn #name(&self, #(#params),*) -> Result<#answer, #rt::Error> {
            #build
            let #answer_ = #rt::call(&self.tub, &self.target, #name_lit, #method, #args, #kwargs, self.timeout);
            #rt::answer(&self.tub, #answer_, #name_lit, #method)
        }

        #[doc = #doc_async]
        #[allow(clippy::too_many_arguments)] // the remote method's, and `done`
        pub fn #name_async(
            &self,
            #(#params,)*
            #done: impl FnOnce(Result<#answer, #rt::Error>) + Send + 'static,
        ) {
            #build
            #rt::call_async(&self.tub, &self.target, (#name_lit, #method), #args, #kwargs, #done)
        }

        #[doc = #doc_future]
        #[allow(clippy::too_many_arguments)] // as many as the remote method has
        pub fn #name_future(&self, #(#params),*) -> #rt::Pending<#answer> {
            #build
            #rt::call_future(&self.tub, &self.target, (#name_lit, #method), #args, #kwargs)
        }
    }
}

fn copyable(item: DeriveInput) -> syn::Result<Tokens> {
    let mut type_name: Option<LitStr> = None;
    let mut krate: Option<Path> = None;
    for a in item.attrs.iter().filter(|a| a.path().is_ident("foolscap")) {
        a.parse_nested_meta(|meta| {
            if meta.path.is_ident("type_name") {
                type_name = Some(meta.value()?.parse()?);
            } else if meta.path.is_ident("crate") {
                krate = Some(meta.value()?.parse()?);
            } else {
                return Err(meta.error("expected type_name or crate"));
            }
            Ok(())
        })?;
    }
    let Some(type_name) = type_name else {
        return Err(Error::new(
            Span::call_site(),
            "a Copyable needs #[foolscap(type_name = \"...\")]",
        ));
    };
    let rt = runtime(&krate);
    let Data::Struct(data) = &item.data else {
        return Err(Error::new(
            item.ident.span(),
            "Copyable is for structs with named fields",
        ));
    };
    if !item.generics.params.is_empty() {
        return Err(Error::new(
            item.generics.span(),
            "a Copyable cannot be generic",
        ));
    }
    let mut fields = Vec::new();
    for f in &data.fields {
        let Some(ident) = &f.ident else {
            return Err(Error::new(
                f.span(),
                "Copyable is for structs with named fields",
            ));
        };
        let mut attribute = LitStr::new(&ident.to_string(), ident.span());
        for a in f.attrs.iter().filter(|a| a.path().is_ident("foolscap")) {
            a.parse_nested_meta(|meta| {
                if meta.path.is_ident("rename") {
                    attribute = meta.value()?.parse()?;
                    Ok(())
                } else {
                    Err(meta.error("expected rename"))
                }
            })?;
        }
        fields.push((ident.clone(), f.ty.clone(), attribute));
    }
    let ident = &item.ident;
    let names: Vec<&LitStr> = fields.iter().map(|f| &f.2).collect();
    let idents: Vec<&Ident> = fields.iter().map(|f| &f.0).collect();
    let types: Vec<&Type> = fields.iter().map(|f| &f.1).collect();
    Ok(quote! {
        impl #rt::ToValue for #ident {
            fn to_value(&self) -> #rt::Value {
                #rt::copyable_value(#type_name, vec![
                    #((#rt::Text::from(#names), #rt::ToValue::to_value(&self.#idents)),)*
                ])
            }
        }

        impl #rt::FromValue for #ident {
            fn from_value(v: &#rt::Value, cx: &#rt::Context<'_>) -> Result<Self, #rt::ConvertError> {
                let state = #rt::copyable_state(v, cx, #type_name, &[#(#names),*])?;
                let _deeper = cx.enter()?;
                Ok(#ident {
                    #(#idents: #rt::attribute(state, #names, cx)?,)*
                })
            }
        }

        impl #rt::Constrained for #ident {
            fn constraint() -> #rt::Constraint {
                #rt::Constraint::Any
            }
        }

        impl #rt::Copyable for #ident {
            const TYPE_NAME: &'static str = #type_name;

            fn state_schema() -> Vec<(String, #rt::Constraint)> {
                vec![#((String::from(#names), <#types as #rt::Constrained>::constraint()),)*]
            }
        }
    })
}
