//! HTTP API route matching: `METHOD /literal/{param}/...` as API Gateway selects routes.

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Literal(String),
    Param(String),
    /// `{name+}`: the rest of the path, as the last segment.
    Greedy(String),
}

#[derive(Debug, Clone)]
pub struct Route {
    /// `ANY` or an upper-case method.
    pub method: String,
    pub path: String,
    pub function_id: String,
    pub authorized: bool,
    segments: Vec<Segment>,
}

impl Route {
    pub fn new(method: &str, path: &str, function_id: &str, authorized: bool) -> Route {
        let segments = path
            .split('/')
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                    Some(name) => match name.strip_suffix('+') {
                        Some(greedy) => Segment::Greedy(greedy.to_string()),
                        None => Segment::Param(name.to_string()),
                    },
                    None => Segment::Literal(s.to_string()),
                },
            )
            .collect();
        Route {
            method: method.to_uppercase(),
            path: path.to_string(),
            function_id: function_id.to_string(),
            authorized,
            segments,
        }
    }

    /// API Gateway's route key, e.g. `GET /outlets/{outletId}/members`.
    pub fn key(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    fn bind(&self, path: &str) -> Option<Vec<(String, String)>> {
        let parts: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        let mut params = Vec::new();
        for (i, segment) in self.segments.iter().enumerate() {
            match segment {
                Segment::Literal(lit) => {
                    if parts.get(i) != Some(&lit.as_str()) {
                        return None;
                    }
                }
                Segment::Param(name) => {
                    params.push((name.clone(), crate::apigw::percent_decode(parts.get(i)?)))
                }
                Segment::Greedy(name) => {
                    if i >= parts.len() {
                        return None;
                    }
                    params.push((name.clone(), parts[i..].join("/")));
                    return Some(params);
                }
            }
        }
        (parts.len() == self.segments.len()).then_some(params)
    }

    /// Literal segments outrank parameters, left to right, and a method outranks `ANY`,
    /// so `/me/balance` wins over `/me/{x}`, as in API Gateway.
    fn rank(&self) -> (Vec<u8>, u8) {
        let segments = self
            .segments
            .iter()
            .map(|s| match s {
                Segment::Literal(_) => 2,
                Segment::Param(_) => 1,
                Segment::Greedy(_) => 0,
            })
            .collect();
        (segments, u8::from(self.method != "ANY"))
    }
}

#[derive(Debug, Clone, Default)]
pub struct Router {
    routes: Vec<Route>,
}

pub struct Matched<'a> {
    pub route: &'a Route,
    pub path_parameters: Vec<(String, String)>,
}

impl Router {
    pub fn new(routes: Vec<Route>) -> Router {
        Router { routes }
    }

    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        self.routes
            .iter()
            .filter(|r| r.method == "ANY" || r.method.eq_ignore_ascii_case(method))
            .filter_map(|r| r.bind(path).map(|params| (r, params)))
            .max_by(|(a, _), (b, _)| a.rank().cmp(&b.rank()))
            .map(|(route, path_parameters)| Matched {
                route,
                path_parameters,
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        Router::new(vec![
            Route::new("GET", "/me", "P", true),
            Route::new("GET", "/me/balance", "W", true),
            Route::new("GET", "/outlets/{outletId}/members", "P", true),
            Route::new("GET", "/outlets/{outletId}/totals", "W", true),
            Route::new("POST", "/claims", "C", true),
            Route::new("ANY", "/files/{key+}", "F", false),
        ])
    }

    #[test]
    fn a_path_parameter_is_bound_by_name_and_decoded() {
        let router = router();
        let m = router.find("GET", "/outlets/OUT%201/members").unwrap();
        assert_eq!(m.route.key(), "GET /outlets/{outletId}/members");
        assert_eq!(
            m.path_parameters,
            vec![("outletId".to_string(), "OUT 1".to_string())]
        );
        assert_eq!(
            router
                .find("GET", "/outlets/X/totals")
                .unwrap()
                .route
                .function_id,
            "W"
        );
    }

    #[test]
    fn the_method_and_every_segment_must_match() {
        let router = router();
        assert!(router.find("GET", "/claims").is_none());
        assert!(router.find("POST", "/claims/extra").is_none());
        assert!(router.find("GET", "/outlets/X").is_none());
        assert_eq!(
            router.find("post", "/claims/").unwrap().route.function_id,
            "C"
        );
    }

    #[test]
    fn a_literal_route_wins_over_a_parameter_and_greedy_takes_the_rest() {
        let router = Router::new(vec![
            Route::new("GET", "/me/{x}", "A", true),
            Route::new("GET", "/me/balance", "B", true),
        ]);
        assert_eq!(
            router.find("GET", "/me/balance").unwrap().route.function_id,
            "B"
        );
        assert_eq!(
            router.find("GET", "/me/other").unwrap().route.function_id,
            "A"
        );
        let m = self::router()
            .find("DELETE", "/files/a/b/c.csv")
            .map(|m| m.path_parameters)
            .unwrap();
        assert_eq!(m, vec![("key".to_string(), "a/b/c.csv".to_string())]);
    }
}
