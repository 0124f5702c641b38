"""A built-in list of the most common passwords, refused by the password policy.

The entries are well-known top entries of public common-password lists (vendors' yearly
"worst passwords" lists and the most frequent passwords of large public breach corpora), written
down by hand, lower case: about 854 words. They are not derived from rules; the policy
adds its own rules for decorations (digits or symbols around a listed word, common letter
substitutions), sequences and repetitions.

A few hundred entries is a floor, not a breach corpus. NIST SP 800-63B §3.1.1.2 asks verifiers
to compare new passwords against a list of commonly used, expected or compromised values;
operators who want a larger list supply one by configuration (one password per line, see
:func:`ironhub.access.policy.parse_password_list`), and it replaces or extends this one through
:attr:`ironhub.access.policy.PasswordPolicy.breached`.

This module holds data only, so the policy stays pure: a ``.py`` constant needs neither file
access nor package data at run time.
"""

from __future__ import annotations

from typing import Final

__all__ = ["COMMON_PASSWORDS"]

_WORDS: Final = """
123456 password 12345678 qwerty 123456789 12345 1234 111111 1234567 dragon 123123 baseball
abc123 football monkey letmein 696969 shadow master 666666 qwertyuiop 123321 mustang
1234567890 michael 654321 superman 1qaz2wsx 7777777 121212 000000 qazwsx 123qwe killer
trustno1 jordan jennifer zxcvbnm asdfgh hunter buster soccer harley batman andrew tigger
sunshine iloveyou 2000 charlie robert thomas hockey ranger daniel starwars klaster 112233
george computer michelle jessica pepper 1111 zxcvbn 555555 11111111 131313 freedom 777777
pass maggie 159753 aaaaaa ginger princess joshua cheese amanda summer love ashley nicole
chelsea biteme matthew access yankees 987654321 dallas austin thunder taylor matrix william
corvette hello martin heather secret merlin diamond 1234qwer gfhjkm hammer silver 222222
88888888 anthony justin test bailey q1w2e3r4t5 patrick internet scooter orange 11111 golfer
cookie richard samantha bigdog guitar jackson whatever mickey chicken sparky snoopy maverick
phoenix camaro peanut morgan welcome falcon cowboy ferrari samsung andrea smokey steelers
joseph mercedes dakota arsenal eagles melissa boomer booboo spider nascar monster tigers
yellow xxxxxx 123123123 gateway marina diablo bulldog qwer1234 compaq purple hardcore banana
junior hannah 123654 porsche lakers iceman money cowboys 987654 london tennis 999999 ncc1701
coffee scooby 0000 miller boston q1w2e3r4 brandon yamaha chester mother forever johnny
edward 333333 oliver redsox player nikita knight fender barney midnight please brandy
chicago badboy slayer rangers charles angel flower rabbit wizard bigdick jasper enter rachel
chris steven winner adidas victoria natasha 1q2w3e4r jasmine winter prince panties marine
ghbdtn fishing cocacola casper james 232323 raiders 888888 marlboro gandalf asdfasdf crystal
87654321 12344321 golf heaven 1q2w3e4r5t 123abc password1 password123 qwerty123 1q2w3e
123456a 1234561 12345678910 qwerty1 abcd1234 aa123456 a123456 123qweasd qweasd qweasdzxc
zaq12wsx zaq1zaq1 1qazxsw2 qazwsxedc 1qaz2wsx3edc 1qaz@wsx p@ssw0rd p@ssword passw0rd
pa55word pa$$word password! password12 password1234 passwort motdepasse contrasena senha
parola wachtwoord haslo salasana lozinka admin admin123 administrator root toor changeme
default guest user login letmein1 welcome1 welcome123 hello123 iloveyou1 iloveu monkey1
dragon1 abc12345 football1 baseball1 princess1 sunshine1 superman1 batman1 master1 shadow1
michael1 qwerty12 qwerty1234 qwertyui qwertyu asdfghjkl asdfghjk asdfghj zxcvbnm1 1234abcd
abcdef abcdefg abcdefgh abc abcabc aaaaaaaa 1111111 123456789a 1234567a 12345a 12345q
123456q qwe123 asd123 zxc123 qaz123 147258369 147258 159357 741852963 789456123 789456
456789 123789 963852741 258456 0987654321 9876543210 1029384756 11223344 112233445566
123412341234 12341234 123456123456 1234512345 5201314 woaini1314 woaini 520520 a1b2c3
a1b2c3d4 killer1 jordan23 michael23 blink182 myspace1 computer1 internet1 whatever1 lovely
loveme lovelove mylove iloveyou2 iloveyou! baby babygirl babygirl1 angel1 angels beautiful
butterfly flowers friends family family1 friend jesus jesus1 christ god blessed faith grace
heaven1 trinity chocolate cookies candy sweety sweetheart sweetie honey honey1 sugar
jessica1 ashley1 nicole1 daniel1 andrew1 joshua1 charlie1 thomas1 robert1 jennifer1
michelle1 amanda1 samantha1 hannah1 jasmine1 anthony1 justin1 soccer1 hockey1 tennis1
basketball football12 soccer12 baseball12 liverpool chelsea1 manchester manutd barcelona
realmadrid juventus arsenal1 starwars1 pokemon naruto minecraft fortnite roblox zelda mario
sonic matrix1 trinity1 neo morpheus gandalf1 frodo hobbit legolas qwerty123456 qwertyuiop1
qwertyuiop123 1qaz2wsx3edc4rfv 1q2w3e4r5t6y 1q2w3e4r5t6y7u8i 1a2b3c4d q1w2e3 q1w2e3r4t5y6
zaq1xsw2 zaq1xsw2cde3 password2 password3 password01 company company1 company123 office
office123 business secret1 secret123 mysecret topsecret private letmein123 access1 access123
trustme trustno1! nopassword nopass none null blank empty temp temp123 temppass temporary
test123 test1234 testing testing123 tester demo demo123 sample example changeit changeme1
changeme123 newpassword newpass reset abc123456 abcd123 abcde12345 abc@123 admin@123 admin1
admin1234 admin12345 administrator1 root123 rootroot toor123 system system1 sysadmin manager
manager1 supervisor support support123 service service123 server server123 oracle mysql
postgres sqlserver database backup backup123 cisco cisco123 router router123 switch network
network1 wireless wifi wifipassword internet123 raspberry pi raspberrypi ubuntu debian linux
linux123 windows windows1 microsoft apple apple123 google google123 facebook yahoo hotmail
gmail iphone android samsung1 nokia huawei xiaomi dell lenovo qwertz qwertz123 azerty
azerty123 azertyuiop qwertzuiop ytrewq poiuytrewq lkjhgfdsa mnbvcxz zxcvbnm123 asdf1234 asdf
asdf123 asdfg asdfgh1 zxcv zxcvb 1qaz 2wsx 3edc 4rfv qazxsw qwaszx qweasdzxc123 1qw23e
1qw23er4 !qaz2wsx !qaz@wsx 1qaz!qaz qwer asdfqwer qwerasdf qweqwe qweqweqwe 123qwe123
qwe123qwe 123asd 123zxc asd123asd 123456qwerty qwerty123456789 1234567q 12345qwert
12345qwerty qwerty12345 q123456 q12345 qq123456 a12345 a1234567 a12345678 aa12345678 abc1234
abcd12345 1a2b3c 1a2s3d4f 111222 111222333 121314 123321123 123654789 147852 147852369
159951 159753456 1472583690 1593572468 2580 258369 321321 321654 369369 456123 456456
654321a 741852 753951 7894561230 852456 951753 963852 987456 998877 10203 102030 1020304050
11111111111 1212 12121212 1313 131313a 1414 1515 1616 1717 1818 1919 2112 2222 22222222 3333
33333333 4444 44444444 5555 55555555 6666 66666666 7777 77777777 8888 9999 99999999 00000000
0000000 000000000 0123456789 a1s2d3f4 aaa111 aaaaa aaaaaaa aaaaaaaaa zzzzzz zzzzzzzz
xxxxxxxx qqqqqq qqqqqqqq 1111111111 123456789012 1234567891 12345678901 102938 1029384756a
iloveyou123 iloveyou12 ilovegod ilovemom iloveyoubaby loveyou love123 lover lovers loving
sexy sexy123 hottie hotstuff fuckyou fuckyou1 fuckoff asshole bitch 69696969 pussy cunt shit
shithead dick penis sex superstar rockstar rockyou starlight moonlight sunlight sunflower
rainbow dolphin tiger lion eagle wolf bear panda kitten kitty puppy doggie cat dog horse
monkey12 chicken1 rabbit1 turtle snake dragon123 dragons phoenix1 unicorn mermaid fairy
angel123 devil demon vampire zombie ninja samurai warrior soldier pirate cowboy1 hunter1
hunter2 killer123 destroyer terminator predator alien robot cyborg shadow123 darkness
blackjack poker casino lucky lucky7 lucky13 money1 money123 cash dollar million rich gold
silver1 diamond1 platinum bitcoin crypto football123 soccer123 hockey123 baseball123
basketball1 golf123 tennis123 yankees1 redsox1 cowboys1 steelers1 packers eagles1 giants
patriots broncos raiders1 lakers1 celtics bulls warriors chelsea123 arsenal123 liverpool1
liverpool123 barcelona1 mustang1 corvette1 ferrari1 porsche1 mercedes1 bmw audi toyota honda
nissan ford chevy harley1 yamaha1 ducati michael123
"""

#: The built-in list, lower case (the policy compares case-insensitively).
COMMON_PASSWORDS: Final[frozenset[str]] = frozenset(_WORDS.split())
