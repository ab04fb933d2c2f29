pub struct Dispatcher;
