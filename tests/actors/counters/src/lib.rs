//! The `counters` guest: drives the host resource `theater:test/counters.counter` through its constructor,
//! methods, static function and drop, passing handles as `borrow`, `own` and in lists, and notes each value
//! (`theater:test/probe`) for the test to compare.

wit_bindgen::generate!({ path: "../../wit", world: "theater:test/counters-actor", generate_all });

use exports::theater::simple::actor::Guest as Actor;
use theater::test::counters::{Counter, live, open_even, values};
use theater::test::probe::note;

struct Counters;

impl Actor for Counters {
    fn init(state: Option<Vec<u8>>, params: (String,)) -> Result<(Option<Vec<u8>>,), String> {
        let _ = params;
        if state.as_deref() == Some(b"leak".as_slice()) {
            // Creates counters until the host refuses one (its resource limit traps this call).
            let mut kept = Vec::new();
            loop {
                kept.push(Counter::new(kept.len() as u64));
                note(&format!("live {}", live()));
            }
        }
        let a = Counter::new(1);
        let b = Counter::new(10);
        note(&format!("a+5 {}", a.add(5)));
        note(&format!("live {}", live()));
        // `b` is moved to the host, which drops it.
        let c = Counter::merge(&a, b);
        note(&format!("c {}", c.get()));
        note(&format!("live {}", live()));
        note(&format!("values {:?}", values(&[&a, &c, &a])));
        drop(a);
        note(&format!("live {}", live()));
        let odd = match open_even(3) {
            Ok(_) => "opened".to_string(),
            Err(e) => e,
        };
        note(&format!("odd {odd}"));
        let d = open_even(4).map_err(|e| e.to_string())?;
        note(&format!("d {}", d.get()));
        drop((c, d));
        note(&format!("live {}", live()));
        Ok((state,))
    }
}

export!(Counters);
