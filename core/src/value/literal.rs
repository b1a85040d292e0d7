//! Python literal syntax → values (see `parse`).
