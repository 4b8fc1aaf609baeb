//! The `http-client` guest: `send(request)` calls `theater:simple/http-client.send-http(request)` and returns
//! its result, so the test drives every request and sees exactly what the guest saw.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/http-client-actor", generate_all });

use exports::theater::test::http_client_driver::Guest as Driver;
use theater::simple::http_client;
use theater::simple::http_types::{HttpRequest, HttpResponse};

struct HttpClient;

impl Driver for HttpClient {
    fn send(
        state: Option<Vec<u8>>,
        params: (HttpRequest,),
    ) -> Result<(Option<Vec<u8>>, (Result<HttpResponse, String>,)), String> {
        Ok((state, (http_client::send_http(&params.0),)))
    }
}

export!(HttpClient);
