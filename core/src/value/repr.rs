//! Values → Python literal syntax.
