//! A router that remembers its routes.
//!
//! axum cannot list the routes of a built [`Router`]. The gateway's OpenAPI
//! description must cover exactly the routes the services serve, so the routers of the
//! public API are built through a [`RouteTable`]: every `(method, path)` added is both
//! routed and recorded, and a test compares the record with the description. A route
//! added without documentation then fails that test instead of going unnoticed.

use axum::Router;
use axum::handler::Handler;
use axum::routing::{self, MethodRouter};

/// One routed `(method, path)`, the path in axum's template syntax (`/api/runs/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Route {
    /// Upper case, as in HTTP: `GET`, `POST`, `PUT`, `DELETE`.
    pub method: &'static str,
    pub path: &'static str,
}

/// A [`Router`] and the list of its routes; build it, keep [`RouteTable::routes`] for
/// the tests, serve [`RouteTable::into_router`].
pub struct RouteTable<S = ()> {
    router: Router<S>,
    routes: Vec<Route>,
}

impl<S: Clone + Send + Sync + 'static> Default for RouteTable<S> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: Clone + Send + Sync + 'static> RouteTable<S> {
    pub fn new() -> Self {
        Self {
            router: Router::new(),
            routes: Vec::new(),
        }
    }

    /// `GET path` (axum answers `HEAD` with it too).
    pub fn get<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add("GET", path, routing::get(handler))
    }

    pub fn post<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add("POST", path, routing::post(handler))
    }

    pub fn put<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add("PUT", path, routing::put(handler))
    }

    pub fn delete<H: Handler<T, S>, T: 'static>(self, path: &'static str, handler: H) -> Self {
        self.add("DELETE", path, routing::delete(handler))
    }

    /// axum merges the method routers of one path, so each method is added on its own.
    fn add(mut self, method: &'static str, path: &'static str, route: MethodRouter<S>) -> Self {
        self.router = self.router.route(path, route);
        self.routes.push(Route { method, path });
        self
    }

    /// Both tables' routes (axum panics on a route added twice, as with
    /// [`Router::merge`]).
    pub fn merge(mut self, other: RouteTable<S>) -> Self {
        self.router = self.router.merge(other.router);
        self.routes.extend(other.routes);
        self
    }

    /// The routes, sorted.
    pub fn routes(&self) -> Vec<Route> {
        let mut routes = self.routes.clone();
        routes.sort();
        routes
    }

    pub fn into_router(self) -> Router<S> {
        self.router
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::{Request, StatusCode};
    use tower::ServiceExt as _;

    async fn status(router: &Router, method: &str, path: &str) -> StatusCode {
        let request = Request::builder()
            .method(method)
            .uri(path)
            .body(Body::empty())
            .unwrap();
        router.clone().oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn every_recorded_route_is_routed_and_nothing_else() {
        let table = RouteTable::new()
            .get("/a", || async { "get a" })
            .post("/a", || async { "post a" })
            .merge(RouteTable::new().delete("/b/{id}", || async { "delete b" }));
        assert_eq!(
            table.routes(),
            [
                Route {
                    method: "DELETE",
                    path: "/b/{id}"
                },
                Route {
                    method: "GET",
                    path: "/a"
                },
                Route {
                    method: "POST",
                    path: "/a"
                },
            ]
        );
        let router = table.into_router();
        assert_eq!(status(&router, "GET", "/a").await, StatusCode::OK);
        assert_eq!(status(&router, "POST", "/a").await, StatusCode::OK);
        assert_eq!(status(&router, "DELETE", "/b/1").await, StatusCode::OK);
        assert_eq!(
            status(&router, "PUT", "/a").await,
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status(&router, "GET", "/b/1").await,
            StatusCode::METHOD_NOT_ALLOWED
        );
    }
}
