"""Topics, dialogue templates and slot values of the synthetic DialogSum-style corpus.

Each :class:`Topic` has slot pools (the first one is its *key* slot, used to hold out
(topic, template, key value) combinations for the test split) and several templates. A template is a
list of turns that alternate ``#Person1#`` / ``#Person2#`` (starting with ``#Person1#``) and a gold
summary; both use ``{slot}`` placeholders. Every text here is ordinary and clean: the hostile
sentences are added by :mod:`detoxrl.testbed.corpus` with words from the run-time lexicon.
"""

from __future__ import annotations

from dataclasses import dataclass, field

NAMES = ["Anna", "Ben", "Carla", "David", "Emma", "Frank", "Grace", "Henry", "Julia", "Kevin",
         "Linda", "Mark", "Nina", "Oscar", "Paula", "Ryan", "Sara", "Tom", "Vera", "Will"]
DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
TIMES = ["9 am", "10 am", "11 am", "noon", "2 pm", "3 pm", "4 pm", "6 pm", "7 pm", "8 pm"]


@dataclass(frozen=True)
class Template:
    turns: tuple[str, ...]
    summary: str


@dataclass(frozen=True)
class Topic:
    name: str
    slots: dict[str, list[str]] = field(hash=False)
    templates: tuple[Template, ...]

    @property
    def key(self) -> str:
        """The slot whose values are held out per template for the test split."""
        return next(iter(self.slots))


def T(summary: str, *turns: str) -> Template:
    return Template(tuple(turns), summary)


TOPICS: list[Topic] = [
    Topic("book a table", {
        "place": [
            "the Blue Cafe", "Luigi's", "the Golden Dragon", "the Green Garden", "Chez Marie", "the Harbor Grill",
            "the Olive Tree", "Sakura House",
        ],
        "n": ["two", "three", "four", "five", "six"],
    }, (
        T("#Person1# books a table for {n} at {place} on {day} at {time}.",
          "Hello, is this {place}?", "Yes, how can I help you?", "I'd like to book a table for {n} on {day}.",
          "What time would you like?", "At {time}, if possible.", "That's fine. May I have your name?", "It's {name}. Thank you."),
        T("#Person2# reserves a table for {n} at {place} for {day} at {time}.",
          "{place}, good evening.", "Hi, do you have a table for {n} on {day}?", "Yes, we do. What time?",
          "Around {time}, please.", "Done. Under what name?", "{name}. See you then."),
        T("#Person1# wants to eat at {place}, and #Person2# books a table for {n} at {time} on {day}.",
          "Let's have dinner at {place} on {day}.", "Good idea. How many of us?", "We are {n} people.",
          "I'll call them and book for {time}.", "Great, I love their food.", "Me too. I'll tell {name}."),
    )),
    Topic("see a doctor", {
        "symptom": [
            "a sore throat", "a bad cough", "a headache", "a fever", "back pain", "a stomach ache", "an ear ache",
            "a rash",
        ],
        "days_ill": ["two days", "three days", "a week", "since Monday", "since yesterday"],
    }, (
        T("#Person2# has had {symptom} for {days_ill}. The doctor gives #Person2# some medicine and asks #Person2# to rest.",
          "What seems to be the problem?", "I have had {symptom} for {days_ill}.", "Do you have any other pain?",
          "No, just that.", "I'll give you some medicine. Rest at home.", "Thank you, doctor."),
        T("#Person1# has {symptom}. The doctor tells #Person1# to drink water and come back on {day}.",
          "Doctor, I have {symptom}.", "How long have you had it?", "For {days_ill}.",
          "Let me check. Drink a lot of water.", "Should I come back?", "Yes, come back on {day} at {time}."),
        T("#Person2# calls to see a doctor about {symptom} and gets an appointment on {day} at {time}.",
          "City clinic, how can I help?", "I need to see a doctor about {symptom}.", "Since when?",
          "For {days_ill} now.", "Dr. {name} can see you on {day} at {time}.", "Perfect, thanks."),
    )),
    Topic("job interview", {
        "job": ["sales assistant", "web designer", "nurse", "cashier", "driver", "teacher", "chef", "plumber"],
        "company": ["Apex Ltd", "Northwind", "Sunrise Media", "Bright Foods", "Metro Bank", "Blue River"],
    }, (
        T("#Person2# has a job interview for the {job} position at {company} and talks about #Person2#'s experience.",
          "Thanks for coming to {company}. Why do you want this job?", "I have worked as a {job} for five years.",
          "What are your strengths?", "I learn fast and I work well with others.", "Good. We will call you on {day}.",
          "Thank you for your time."),
        T("#Person1# interviews #Person2# for the {job} job at {company} and offers #Person2# a second interview on {day}.",
          "Please tell me about yourself.", "I studied hard and I want to be a {job}.", "Why {company}?",
          "I like your projects and your team.", "Can you come back on {day} at {time}?", "Yes, of course."),
        T("#Person1# tells #Person2# about an interview for a {job} job at {company} on {day}.",
          "I have an interview at {company} on {day}.", "Which job is it?", "They need a {job}.",
          "That's great news! Are you ready?", "I think so. I'm a bit nervous.", "You will do fine."),
    )),
    Topic("hotel check-in", {
        "hotel": [
            "the Grand Hotel", "the Park Inn", "the Seaside Lodge", "the City Hotel", "the Royal Plaza",
            "the Maple Inn",
        ],
        "nights": ["one night", "two nights", "three nights", "four nights", "a week"],
    }, (
        T("#Person1# checks in at {hotel} for {nights}. #Person2# gives #Person1# the key to room 204.",
          "Good evening, welcome to {hotel}.", "Hi, I have a booking for {nights}.", "Your name, please?",
          "{name}.", "Here is your key. Room 204.", "Thanks. When is breakfast?", "From 7 to 10 am."),
        T("#Person2# wants a room at {hotel} for {nights}, but only a double room is left, and #Person2# takes it.",
          "Welcome to {hotel}. Can I help you?", "Do you have a single room for {nights}?",
          "Sorry, only a double room is left.", "How much is it?", "It's 90 dollars a night.", "OK, I'll take it."),
        T("#Person1# asks about late check-out at {hotel}, and #Person2# allows it until noon.",
          "Excuse me, can I check out late?", "When would you like to leave?", "At noon, please.",
          "That's fine for you.", "Great. I stayed {nights} and loved {hotel}.", "Thank you, come again."),
    )),
    Topic("buy clothes", {
        "item": ["jacket", "pair of jeans", "sweater", "dress", "shirt", "coat", "skirt", "pair of shoes"],
        "color": ["blue", "black", "red", "green", "grey", "white"],
    }, (
        T("#Person2# buys a {color} {item} in size medium after trying it on.",
          "Can I help you?", "I'm looking for a {color} {item}.", "What size are you?",
          "Medium, I think.", "Here you are. The fitting room is there.", "It fits well. I'll take it."),
        T("#Person1# wants a {color} {item}, but the shop only has it in large, so #Person1# will come back on {day}.",
          "Do you have this {item} in {color}?", "Yes, but only in large.", "That's too big for me.",
          "We get new ones on {day}.", "Then I'll come back on {day}.", "See you then."),
        T("#Person1# and #Person2# go shopping, and #Person1# buys a {color} {item} on sale.",
          "Look, this {color} {item} is on sale.", "It looks nice on you.", "Is it really half price?",
          "Yes, the sign says so.", "Then I'll buy it.", "Good choice."),
    )),
    Topic("rent an apartment", {
        "area": [
            "near the park", "downtown", "by the river", "near the station", "on Oak Street", "near the university",
        ],
        "rooms": ["one bedroom", "two bedrooms", "three bedrooms", "a studio"],
    }, (
        T("#Person2# looks for an apartment {area} with {rooms}, and #Person1# shows #Person2# one on {day}.",
          "How can I help you?", "I need an apartment {area}.", "How many rooms?",
          "{rooms}, please.", "I have one. Can you see it on {day}?", "Yes, at {time} is fine."),
        T("#Person1# rents an apartment {area} with {rooms}. #Person2# asks for the first month's rent by {day}.",
          "I like this place {area}.", "It has {rooms} and a big kitchen.", "How much is the rent?",
          "900 dollars a month.", "OK, I'll take it.", "Please pay the first month by {day}."),
        T("#Person1# tells #Person2# that #Person1# is moving to an apartment {area} with {rooms}.",
          "I'm moving next month.", "Where to?", "To an apartment {area}.", "How big is it?",
          "It has {rooms}.", "Sounds lovely. I'll help you move."),
    )),
    Topic("check in for a flight", {
        "city": ["Paris", "Tokyo", "Rome", "Berlin", "Madrid", "Toronto", "Sydney", "Cairo"],
        "seat": ["a window seat", "an aisle seat", "a seat in the front", "a seat near the exit"],
    }, (
        T("#Person1# checks in for the flight to {city} and gets {seat}.",
          "Good morning. Where are you flying today?", "To {city}.", "May I see your passport?",
          "Here you are.", "Would you like a window or an aisle?", "I'd like {seat}.", "Here is your boarding pass."),
        T("#Person2#'s flight to {city} is delayed until {time}, and #Person1# gives #Person2# a meal voucher.",
          "Excuse me, is the flight to {city} on time?", "Sorry, it's delayed until {time}.", "Oh no. Why?",
          "Bad weather.", "What can I do now?", "Here is a meal voucher."),
        T("#Person1# is flying to {city} on {day}, and #Person2# will drive #Person1# to the airport.",
          "I'm flying to {city} on {day}.", "What time is your flight?", "At {time}.",
          "I can drive you to the airport.", "Really? Thank you so much.", "No problem."),
    )),
    Topic("order food delivery", {
        "food": ["a pizza", "two burgers", "some noodles", "a curry", "fried rice", "a salad", "sushi", "tacos"],
        "address": ["12 Elm Street", "5 Lake Road", "40 Hill Avenue", "8 Bridge Lane", "21 Park Road"],
    }, (
        T("#Person2# orders {food} to {address}, and it will arrive in thirty minutes.",
          "Quick Meals, what would you like?", "I'd like {food}, please.", "What's your address?",
          "{address}.", "It will be there in thirty minutes.", "Great, thanks."),
        T("#Person1# calls because the order of {food} to {address} has not arrived, and #Person2# sends it again.",
          "Hi, I ordered {food} an hour ago.", "What's the address?", "{address}.",
          "Sorry, the driver got lost.", "So when will it come?", "We will send it again now."),
        T("#Person1# and #Person2# decide to order {food} for dinner.",
          "I'm too tired to cook tonight.", "Let's order something.", "How about {food}?",
          "Good idea. I'll call them.", "Ask them to bring it to {address}.", "Sure."),
    )),
    Topic("open a bank account", {
        "account": [
            "a savings account", "a checking account", "a student account", "a business account", "a joint account",
        ],
        "document": ["a passport", "an ID card", "a driving license", "a bank letter"],
    }, (
        T("#Person2# opens {account} and shows {document}.",
          "Good morning. How can I help you?", "I'd like to open {account}.", "Do you have an ID?",
          "Yes, I have {document}.", "Please fill in this form.", "Here it is. Thanks."),
        T("#Person1# asks about {account}, and #Person2# says #Person1# needs {document} and can open it on {day}.",
          "What do I need for {account}?", "You need {document}.", "Can I open it today?",
          "Sorry, please come on {day}.", "At what time?", "Any time after {time}."),
        T("#Person1# tells #Person2# to open {account} to save money.",
          "I can never save money.", "You should open {account}.", "Is it hard?",
          "No, just bring {document}.", "OK, I'll go on {day}.", "Good plan."),
    )),
    Topic("car repair", {
        "problem": [
            "a flat tire", "a broken light", "a strange noise", "a dead battery", "a leaking oil tank", "bad brakes",
        ],
        "car": ["the old car", "the van", "the red car", "the truck", "the small car"],
    }, (
        T("#Person2# brings {car} in because of {problem}. #Person1# will fix it by {day}.",
          "What's wrong with your car?", "{car} has {problem}.", "Let me take a look.",
          "Can you fix it soon?", "It will be ready on {day}.", "Thank you."),
        T("#Person1#'s car has {problem}. #Person2# says the repair costs 200 dollars.",
          "How much to fix {problem}?", "About 200 dollars.", "That's a lot.",
          "The parts are expensive.", "OK, go ahead.", "Come back at {time}."),
        T("#Person1# can't drive to work because {car} has {problem}, so #Person2# gives #Person1# a ride.",
          "I can't drive today.", "What happened?", "{car} has {problem}.",
          "I can give you a ride.", "That would be great.", "I'll pick you up at {time}."),
    )),
    Topic("borrow a library book", {
        "book": [
            "a history book", "a cook book", "a travel guide", "a novel", "a science book", "a poetry book",
            "a dictionary",
        ],
        "weeks": ["one week", "two weeks", "three weeks", "a month"],
    }, (
        T("#Person2# borrows {book} from the library for {weeks}.",
          "Can I help you?", "I want to borrow {book}.", "Do you have a library card?",
          "Yes, here it is.", "You can keep it for {weeks}.", "Thank you."),
        T("#Person1# returns {book} late and pays a small fine.",
          "I want to return {book}.", "It is late by {weeks}.", "Sorry, I forgot.",
          "There is a small fine.", "How much?", "Two dollars, please."),
        T("#Person1# can't find {book}, and #Person2# says it will be back on {day}.",
          "Where can I find {book}?", "Let me check. Someone has it.", "When will it be back?",
          "On {day}.", "Can you keep it for me?", "Sure, I'll hold it."),
    )),
    Topic("lost item", {
        "lost": ["wallet", "phone", "scarf", "backpack", "watch", "purse", "camera"],
        "spot": ["on the bus", "in the park", "at the cafe", "in the taxi", "at the station", "in the office"],
    }, (
        T("#Person2# lost a {lost} {spot}, and #Person1# finds it in the lost and found.",
          "Lost and found, can I help?", "I lost my {lost} {spot}.", "What does it look like?",
          "It's black and quite new.", "Is this it?", "Yes! Thank you so much."),
        T("#Person1# lost a {lost} {spot} on {day}. #Person2# takes #Person1#'s number and will call.",
          "I think I lost my {lost}.", "Where did you lose it?", "{spot}, on {day}.",
          "We don't have it yet.", "Please call me.", "I will. What is your number?"),
        T("#Person1# can't find the {lost}, and #Person2# helps #Person1# look for it.",
          "Have you seen my {lost}?", "No. Where did you have it last?", "Maybe {spot}.",
          "Let's go and look.", "Thanks for helping.", "That's what friends are for."),
    )),
    Topic("send a parcel", {
        "parcel": ["a small box", "a letter", "a big parcel", "some books", "a gift", "some photos"],
        "dest": ["London", "Chicago", "Seoul", "Lima", "Oslo", "Dublin", "Nairobi"],
    }, (
        T("#Person2# sends {parcel} to {dest} by express mail.",
          "Next, please.", "I want to send {parcel} to {dest}.", "By normal or express mail?",
          "Express, please.", "That's 30 dollars.", "Here you are."),
        T("#Person1# asks how long it takes to send {parcel} to {dest}. #Person2# says five days.",
          "How long does {parcel} take to {dest}?", "About five days.", "Is there a faster way?",
          "Express takes two days.", "I'll take normal mail.", "OK, fill in this form."),
        T("#Person1# asks #Person2# to send {parcel} to {dest} on the way to work.",
          "Could you post {parcel} for me?", "Sure. Where to?", "To {dest}.",
          "I'll do it on my way to work.", "You're so kind.", "No problem."),
    )),
    Topic("get a haircut", {
        "style": ["a short cut", "a trim", "a new color", "a bob", "layers", "a fringe"],
        "stylist": ["Mia", "Leo", "Rosa", "Sam", "Ivy", "Max"],
    }, (
        T("#Person2# books {style} with {stylist} on {day} at {time}.",
          "Hair studio, hello.", "I'd like to book {style}.", "With {stylist}?",
          "Yes, please.", "{day} at {time} is free.", "Perfect."),
        T("#Person1# gets {style}, and #Person2# likes the new look.",
          "What would you like today?", "{style}, please.", "No problem. Sit here.",
          "Not too short, please.", "How do you like it?", "I love it."),
        T("#Person1# tells #Person2# about getting {style} from {stylist}.",
          "You look different!", "I got {style}.", "Who did it?",
          "{stylist} at the studio.", "It looks great.", "Thanks!"),
    )),
    Topic("join a gym", {
        "plan": ["a monthly plan", "a yearly plan", "a student plan", "a morning plan", "a family plan"],
        "class": ["yoga", "swimming", "boxing", "dance", "cycling", "pilates"],
    }, (
        T("#Person2# joins the gym with {plan} and signs up for {class} classes.",
          "Welcome to the gym.", "I want to join. What plans do you have?", "We have {plan}.",
          "Does it include classes?", "Yes, {class} is free.", "Great, sign me up."),
        T("#Person1# asks about {plan}. #Person2# says {class} is on {day} at {time}.",
          "How much is {plan}?", "40 dollars.", "When is the {class} class?",
          "{day} at {time}.", "OK, I'll try it.", "See you there."),
        T("#Person1# invites #Person2# to a {class} class on {day}.",
          "Do you want to come to {class} with me?", "When is it?", "{day} at {time}.",
          "Is it hard?", "Not at all.", "OK, I'll come."),
    )),
    Topic("plan a trip", {
        "destination": ["the mountains", "the beach", "Italy", "the lake", "Greece", "the countryside", "Japan"],
        "length": ["a weekend", "five days", "a week", "ten days", "two weeks"],
    }, (
        T("#Person1# and #Person2# plan to spend {length} in {destination}.",
          "Where should we go this summer?", "How about {destination}?", "Good. For how long?",
          "Maybe {length}.", "I'll book the hotel.", "And I'll buy the tickets."),
        T("#Person2# asks the travel agent about {destination}, and #Person1# offers a package for {length}.",
          "Can I help you plan a trip?", "I want to visit {destination}.", "We have a package for {length}.",
          "What does it include?", "Hotel, flights and breakfast.", "Sounds good."),
        T("#Person1# is back from {length} in {destination} and tells #Person2# about it.",
          "Welcome back! How was {destination}?", "It was wonderful.", "How long were you there?",
          "{length}.", "Did you take photos?", "Lots. I'll show you."),
    )),
    Topic("buy movie tickets", {
        "movie": [
            "the new comedy", "the space film", "the cartoon", "the detective film", "the musical", "the war film",
        ],
        "tickets": ["one ticket", "two tickets", "three tickets", "four tickets"],
    }, (
        T("#Person2# buys {tickets} for {movie} at {time}.",
          "Which movie, please?", "{tickets} for {movie}.", "The show at {time}?",
          "Yes, please.", "That's 24 dollars.", "Here you go."),
        T("#Person1# asks #Person2# to see {movie} on {day} at {time}.",
          "Do you want to see {movie}?", "Sure. When?", "{day} at {time}.",
          "OK. I'll buy {tickets}.", "Great.", "See you at the cinema."),
        T("#Person1# wants {tickets} for {movie}, but it is sold out, so #Person1# books for {day}.",
          "{tickets} for {movie}, please.", "Sorry, it's sold out.", "What about {day}?",
          "Yes, we have seats.", "Then {day}, please.", "Done."),
    )),
    Topic("plan a birthday party", {
        "friend": ["Lucy", "Jack", "Maria", "Peter", "Sophie", "Daniel", "Olivia"],
        "venue": ["at home", "in the garden", "at a restaurant", "in the park", "at the club"],
    }, (
        T("#Person1# and #Person2# plan a party for {friend}'s birthday {venue} on {day}.",
          "It's {friend}'s birthday on {day}.", "Let's have a party {venue}.", "Good idea.",
          "I'll bake a cake.", "I'll invite everyone.", "It will be fun."),
        T("#Person2# invites #Person1# to {friend}'s birthday party {venue} on {day} at {time}.",
          "Are you free on {day}?", "Yes, why?", "We're having a party for {friend} {venue}.",
          "I'd love to come. What time?", "At {time}.", "I'll be there."),
        T("#Person1# asks #Person2# what to buy for {friend}'s birthday, and #Person2# suggests a book.",
          "What should I get {friend}?", "{friend} loves reading.", "So a book?",
          "Yes, a good novel.", "Thanks, I'll buy one.", "See you at the party."),
    )),
    Topic("return a product", {
        "product": ["a toaster", "a lamp", "a kettle", "a printer", "headphones", "a blender", "a fan"],
        "reason": ["it is broken", "it is too noisy", "it doesn't work", "it is the wrong color", "a part is missing"],
    }, (
        T("#Person2# returns {product} because {reason}, and #Person1# gives a refund.",
          "How can I help?", "I want to return {product}.", "What's wrong?",
          "{reason}.", "Do you have the receipt?", "Yes, here.", "OK, here is your refund."),
        T("#Person1# wants to return {product}, but has no receipt, so #Person2# offers an exchange.",
          "I'd like to return {product}.", "Can I see the receipt?", "I lost it.",
          "Then I can only exchange it.", "OK, that's fine.", "Pick a new one."),
        T("#Person1# tells #Person2# that {product} #Person1# bought is bad because {reason}.",
          "I'm unhappy with {product}.", "Why?", "{reason}.",
          "Take it back to the shop.", "I will on {day}.", "Good idea."),
    )),
    Topic("take a taxi", {
        "dest": ["the airport", "the station", "the museum", "City Hall", "the hospital", "the stadium"],
        "fare": ["15 dollars", "20 dollars", "25 dollars", "30 dollars"],
    }, (
        T("#Person2# takes a taxi to {dest} and pays {fare}.",
          "Where to?", "{dest}, please.", "Sure. Busy day?",
          "Yes, I'm in a hurry.", "Here we are. That's {fare}.", "Keep the change."),
        T("#Person1# asks how much a taxi to {dest} costs, and #Person2# says about {fare}.",
          "How much to {dest}?", "About {fare}.", "How long does it take?",
          "Twenty minutes.", "OK, let's go.", "Hop in."),
        T("#Person1# calls for a taxi to {dest} at {time}.",
          "I need a taxi at {time}.", "Where are you going?", "To {dest}.",
          "And your address?", "10 Main Street.", "A car will be there."),
    )),
    Topic("school meeting", {
        "subject": ["math", "English", "science", "history", "art", "music"],
        "child": ["Tim", "Amy", "Leo", "Zoe", "Max", "Ella"],
    }, (
        T("#Person1#, a teacher, tells #Person2# that {child} is doing well in {subject}.",
          "Thank you for coming.", "How is {child} doing?", "{child} is doing well in {subject}.",
          "That's good to hear.", "{child} works very hard.", "I'm proud."),
        T("#Person2# asks for help because {child} has trouble with {subject}, and #Person1# offers extra lessons.",
          "{child} has trouble with {subject}.", "I can give extra lessons.", "When?",
          "{day} at {time}.", "Thank you so much.", "You're welcome."),
        T("#Person1# and #Person2# talk about {child}'s {subject} homework.",
          "Did {child} finish the {subject} homework?", "Not yet.", "It's due on {day}.",
          "I'll help tonight.", "Good. It's not hard.", "OK."),
    )),
    Topic("buy medicine", {
        "medicine": ["cough syrup", "pain pills", "eye drops", "allergy pills", "vitamins", "a cream"],
        "dose": ["twice a day", "three times a day", "once a day", "every morning"],
    }, (
        T("#Person2# buys {medicine} at the pharmacy and must take it {dose}.",
          "Can I help you?", "I need {medicine}.", "Here you are.",
          "How do I take it?", "Take it {dose}.", "Thanks."),
        T("#Person1# asks if {medicine} needs a prescription, and #Person2# says it does not.",
          "Do I need a prescription for {medicine}?", "No, you don't.", "Great. How much?",
          "Eight dollars.", "I'll take it.", "Use it {dose}."),
        T("#Person1# reminds #Person2# to take {medicine} {dose}.",
          "Did you take your {medicine}?", "I forgot.", "You must take it {dose}.",
          "You're right.", "Here is some water.", "Thanks."),
    )),
    Topic("internet problem", {
        "device": ["laptop", "router", "phone", "computer", "tablet", "printer"],
        "issue": ["no signal", "a slow connection", "a blank screen", "an error message", "no sound"],
    }, (
        T("#Person2#'s {device} has {issue}, and #Person1# tells #Person2# to restart it, which fixes it.",
          "Tech support, how can I help?", "My {device} has {issue}.", "Please restart it.",
          "OK. Wait a moment.", "Is it working now?", "Yes, it works. Thanks."),
        T("#Person1#'s {device} has {issue}, and #Person2# sends a technician on {day}.",
          "My {device} has {issue} again.", "Did you restart it?", "Yes, twice.",
          "We'll send a technician.", "When?", "{day} at {time}."),
        T("#Person1# asks #Person2# to help with a {device} that has {issue}.",
          "Can you look at my {device}?", "What's wrong?", "It has {issue}.",
          "Let me see. A cable is loose.", "Oh, that's it?", "Yes, it's fine now."),
    )),
    Topic("weekend plans", {
        "activity": [
            "go hiking", "see a concert", "visit the zoo", "play tennis", "go fishing", "have a picnic",
            "go cycling",
        ],
        "friend": ["Alex", "Kate", "Nick", "Rita", "Sean", "Tina"],
    }, (
        T("#Person1# and #Person2# decide to {activity} with {friend} on {day}.",
          "Any plans for the weekend?", "Not yet.", "Let's {activity} with {friend}.",
          "Great idea. When?", "{day} morning.", "Sounds good."),
        T("#Person2# can't {activity} on {day} because #Person2# has to work, so they will go next week.",
          "Do you want to {activity} on {day}?", "Sorry, I have to work.", "That's a pity.",
          "How about next week?", "OK, next week then.", "Great."),
        T("#Person1# tells #Person2# that #Person1# will {activity} with {friend} on {day} at {time}.",
          "What are you doing on {day}?", "I'm going to {activity}.", "Who with?",
          "{friend}.", "Have fun!", "Thanks. We start at {time}."),
    )),
]
"""24 topics with 3 templates each."""
